"""Seeding is idempotent and never undoes an admin's change."""

from __future__ import annotations

from sqlalchemy import func, select, update

from computebill.catalog.models import GpuModel, PricingPolicy
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


async def test_seeding_gives_migrated_models_their_shape_and_regions_their_cities(
    settings: Settings,
) -> None:
    """A catalog from before shapes has the migration's generic shape and no cities: seeding
    sets the seed's."""
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            await db.execute(update(GpuModel).values(vcpus_per_gpu=12, ram_gb_per_gpu=128))
            await db.execute(
                update(GpuModel)
                .where(GpuModel.slug == "amd-mi300x")
                .values(vcpus_per_gpu=14)  # not the generic shape: kept
            )
            await db.execute(update(PricingPolicy).values(region_cities={}))
        await seed_database(settings)
        async with unit_of_work(create_sessionmaker(engine)) as db:
            rows = await db.execute(
                select(GpuModel.slug, GpuModel.vcpus_per_gpu, GpuModel.ram_gb_per_gpu)
            )
            shapes = {slug: (vcpus, ram) for slug, vcpus, ram in rows}
            cities = await db.scalar(select(PricingPolicy.region_cities))
        assert shapes["nvidia-h100"] == (26, 225)
        assert shapes["amd-mi300x"] == (14, 128)
        assert cities == {
            "us-east-1": "N. Virginia",
            "us-west-2": "Oregon",
            "eu-central-1": "Frankfurt",
        }
    finally:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            await db.execute(
                update(GpuModel)
                .where(GpuModel.slug == "amd-mi300x")
                .values(vcpus_per_gpu=12, ram_gb_per_gpu=231)
            )
        await engine.dispose()
