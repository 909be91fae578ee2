"""The demo account `computebill up` creates, so a developer can sign in at once."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from computebill.auth.models import User
from computebill.auth.service import Client, sign_up
from computebill.clock import SystemClock
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work

DEMO_EMAIL = "demo@computebill.dev"


async def _ensure_demo_account(settings: Settings, password: str) -> None:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            exists = await db.scalar(select(User.id).where(User.email == DEMO_EMAIL))
            if exists is None:
                now = SystemClock().now()
                demo = await sign_up(
                    db,
                    email=DEMO_EMAIL,
                    password=password,
                    name="Demo User",
                    settings=settings,
                    now=now,
                    client=Client(ip_address="", user_agent="computebill up"),
                )
                # No inbox stands behind a local demo: it is verified, so it can buy at once.
                demo.email_verified_at = now
    finally:
        await engine.dispose()


def ensure_demo_account(settings: Settings, *, password: str) -> None:
    """Sign the demo user up, its address verified, unless the account exists (its password is
    then left as it is)."""
    asyncio.run(_ensure_demo_account(settings, password))
