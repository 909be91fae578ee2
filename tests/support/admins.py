"""Making a signed-up user an admin (or support), as `computebill admin grant` does, in this
process."""

from __future__ import annotations

from computebill.auth.service import Role, set_role
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work


async def make_admin(settings: Settings, email: str, role: Role = Role.ADMIN) -> None:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            assert await set_role(db, email=email, role=role) is not None
    finally:
        await engine.dispose()
