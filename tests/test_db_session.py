"""The rolled-back session behind the `db_session` fixture: whatever a test writes in it, flushed
or even committed, is gone when the test ends, and no other connection sees it meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.auth.models import User
from computebill.config import Settings
from computebill.db import create_engine
from tests.support.database import rolled_back_session


async def _users_seen_elsewhere(settings: Settings, emails: list[str]) -> int:
    """How many of these users a connection of another engine finds."""
    elsewhere = create_engine(settings)
    try:
        async with AsyncSession(elsewhere) as session:
            count = await session.scalar(
                select(func.count()).select_from(User).where(User.email.in_(emails))
            )
            return int(count or 0)
    finally:
        await elsewhere.dispose()


async def test_what_the_session_wrote_is_gone_after_it_even_if_committed(
    engine: AsyncEngine, settings: Settings, email: str
) -> None:
    flushed, committed = f"flushed-{email}", f"committed-{email}"
    async with rolled_back_session(engine) as session:
        session.add(User(email=flushed, password_changed_at=datetime.now(UTC)))
        await session.flush()
        session.add(User(email=committed, password_changed_at=datetime.now(UTC)))
        await session.commit()  # only releases a savepoint
        seen = set(await session.scalars(select(User.email).where(User.email.like(f"%-{email}"))))
        assert seen == {flushed, committed}
        assert await _users_seen_elsewhere(settings, [flushed, committed]) == 0
    assert await _users_seen_elsewhere(settings, [flushed, committed]) == 0
