"""The worker's expiry job: each minute, what is left of a grant past its expiry leaves the
balance, once, and is logged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from computebill.config import Settings
from computebill.credits.jobs import expire_credit_grants
from computebill.credits.service import balance
from computebill.db import create_sessionmaker, unit_of_work
from computebill.queue.publisher import AppQueuePublisher
from tests.credits.ledger import add_user, grant
from tests.support.jobs import job_context


async def test_the_job_expires_what_is_left_once(settings: Settings, engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    async with unit_of_work(sessions) as db:
        user_id = await add_user(db)
        granted = await grant(
            db, user_id, 5_000, expires_at=an_hour_ago + timedelta(minutes=59), now=an_hour_ago
        )
        kept = await grant(db, user_id, 1_000, expires_at=None, now=an_hour_ago)
    grant_id = granted.grant.grant_entry_id

    publisher = AppQueuePublisher(settings)
    try:
        context = job_context(settings, sessions, publisher)
        with capture_logs() as first:
            await expire_credit_grants(context)
        with capture_logs() as second:
            await expire_credit_grants(context)
    finally:
        await publisher.close()

    [expired] = [line for line in first if line.get("grant_entry_id") == str(grant_id)]
    assert expired["event"] == "credit_grant_expired"
    assert expired["expired_millicents"] == 5_000
    assert not [line for line in second if line.get("user_id") == str(user_id)]
    async with sessions() as db:
        assert await balance(db, user_id) == 1_000
        kinds = await db.scalars(
            text("SELECT kind FROM credit_entries WHERE user_id = :id ORDER BY position"),
            {"id": user_id},
        )
        assert list(kinds) == ["grant", "grant", "expiry"]
        left = await db.scalar(
            text("SELECT remaining_millicents FROM credit_grants WHERE grant_entry_id = :id"),
            {"id": kept.grant.grant_entry_id},
        )
        assert left == 1_000
