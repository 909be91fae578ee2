"""`computebill seed`: the starting catalog (idempotent)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from computebill.catalog.service import CatalogCache, seed_catalog
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work


async def seed_database(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            await seed_catalog(db)
    finally:
        await engine.dispose()
    if settings.redis_url is not None:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            await CatalogCache(redis, namespace=settings.redis_namespace).invalidate()
        finally:
            await redis.aclose()


def seed(settings: Settings) -> None:
    asyncio.run(seed_database(settings))
