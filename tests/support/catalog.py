"""Catalog changes as an admin makes them, for the tests of what customers then see."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

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
