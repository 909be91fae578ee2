"""Making a signed-up user an admin, as `computebill admin grant` does, in this process."""

from __future__ import annotations

from computebill.auth.service import grant_role
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work


async def make_admin(settings: Settings, email: str) -> None:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            assert await grant_role(db, email=email, role="admin")
    finally:
        await engine.dispose()
