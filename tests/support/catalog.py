"""Catalog changes as an admin makes them, for the tests of what customers then see."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.cart.models import CartItem
from computebill.catalog.models import MachineImage
from computebill.catalog.service import change_gpu_model
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.state import app_state


async def admin_change(
    settings: Settings, app: FastAPI, change: Callable[[AsyncSession], Awaitable[object]]
) -> None:
    """Change the catalog as an admin would: commit, then invalidate every process's cache."""
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            await change(db)
    finally:
        await engine.dispose()
    await app_state(app).catalog_cache.invalidate()


def activate(slug: str, active: bool) -> Callable[[AsyncSession], Awaitable[object]]:
    return lambda db: change_gpu_model(db, slug=slug, active=active)


def set_rate(slug: str, cents: int) -> Callable[[AsyncSession], Awaitable[object]]:
    return lambda db: change_gpu_model(db, slug=slug, price_per_gpu_hour_cents=cents)


SEEDED_DEFAULT_IMAGE = "ubuntu-24.04-cuda-12.6"  # NVIDIA's
SEEDED_AMD_DEFAULT_IMAGE = "ubuntu-24.04-rocm-6.3"


def new_image(slug: str, **changes: Any) -> dict[str, Any]:
    """A machine image as `POST /api/v1/admin/images` takes it."""
    return {
        "slug": slug,
        "name": f"Test image {slug}",
        "description": "An image the tests add.",
        "versions": [
            {"name": "Ubuntu", "version": "24.04"},
            {"name": "CUDA", "version": "12.8"},
            {"name": "Triton", "version": "3.2.0"},
        ],
        "vendor": "nvidia",
        "active": True,
    } | changes


async def remove_images(db: AsyncSession, slugs: list[str]) -> None:
    """Images a test added, with the cart lines naming them; the seeded defaults the defaults
    again (a test may have moved them)."""
    seeded_defaults = [SEEDED_DEFAULT_IMAGE, SEEDED_AMD_DEFAULT_IMAGE]
    added = select(MachineImage.id).where(MachineImage.slug.in_(slugs)).scalar_subquery()
    await db.execute(delete(CartItem).where(CartItem.image_id.in_(added)))
    await db.execute(delete(MachineImage).where(MachineImage.slug.in_(slugs)))
    await db.execute(
        update(MachineImage)
        .where(MachineImage.is_default, MachineImage.slug.not_in(seeded_defaults))
        .values(is_default=False)
    )
    await db.execute(
        update(MachineImage)
        .where(MachineImage.slug.in_(seeded_defaults))
        .values(is_default=True, active=True)
    )


@asynccontextmanager
async def extra_image(
    settings: Settings, app: FastAPI, slug: str, **changes: Any
) -> AsyncIterator[dict[str, Any]]:
    """An image of `new_image(slug, **changes)` in the catalog while the block runs."""
    fields = new_image(slug, **changes)
    await admin_change(
        settings, app, lambda db: db.execute(insert(MachineImage).values(**fields, position=99))
    )
    try:
        yield fields
    finally:
        await admin_change(settings, app, lambda db: remove_images(db, [slug]))


def change_image(slug: str, **values: Any) -> Callable[[AsyncSession], Awaitable[object]]:
    return lambda db: db.execute(
        update(MachineImage).where(MachineImage.slug == slug).values(**values)
    )
