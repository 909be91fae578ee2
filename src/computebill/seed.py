"""`computebill seed`: the starting catalog (idempotent), and for `up` a demo account."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from sqlalchemy import select

from computebill.auth.models import User
from computebill.auth.service import Client, sign_up
from computebill.catalog.service import CatalogCache, seed_catalog
from computebill.clock import SystemClock
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work

DEMO_EMAIL = "demo@computebill.dev"


async def seed_database(settings: Settings, *, demo_password: str | None = None) -> None:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            await seed_catalog(db)
            if demo_password is not None:
                exists = await db.scalar(select(User.id).where(User.email == DEMO_EMAIL))
                if exists is None:
                    await sign_up(
                        db,
                        email=DEMO_EMAIL,
                        password=demo_password,
                        name="Demo User",
                        settings=settings,
                        now=SystemClock().now(),
                        client=Client(ip_address="", user_agent="computebill seed"),
                    )
    finally:
        await engine.dispose()
    if settings.redis_url is not None:
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            await CatalogCache(redis, namespace=settings.redis_namespace).invalidate()
        finally:
            await redis.aclose()


def seed(settings: Settings, *, demo_password: str | None = None) -> None:
    asyncio.run(seed_database(settings, demo_password=demo_password))
