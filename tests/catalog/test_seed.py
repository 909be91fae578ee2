"""Seeding is idempotent and never undoes an admin's change."""

from __future__ import annotations

from sqlalchemy import func, select

from computebill.catalog.models import GpuModel
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.seed import seed_database
from tests.support.catalog import admin_change, set_rate
from tests.support.http import Api


async def test_seeding_twice_changes_nothing_and_keeps_admin_rates(
    api: Api, settings: Settings
) -> None:
    await admin_change(settings, api.app, set_rate("amd-mi300x", 229))
    try:
        await seed_database(settings)
        await seed_database(settings)
        engine = create_engine(settings)
        async with unit_of_work(create_sessionmaker(engine)) as db:
            count = await db.scalar(select(func.count()).select_from(GpuModel))
            rate = await db.scalar(
                select(GpuModel.price_per_gpu_hour_cents).where(GpuModel.slug == "amd-mi300x")
            )
        await engine.dispose()
        assert (count, rate) == (8, 229)
    finally:
        await admin_change(settings, api.app, set_rate("amd-mi300x", 219))
