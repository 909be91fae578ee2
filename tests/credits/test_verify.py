"""Verifying the ledger: an account whose balance is not the sum of its entries, or not what its
latest entry left, is found by `verify_ledger`, makes `computebill credits verify` exit 1, and is
logged as an alert by the daily job. In a database of its own: the verification reads every
account there is."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from computebill.config import Settings
from computebill.credits.jobs import verify_credit_ledger
from computebill.credits.models import EntryKind
from computebill.credits.service import Mismatch, verify_ledger
from computebill.db import unit_of_work
from computebill.devserver.scratch import Sessions, database
from computebill.queue.publisher import AppQueuePublisher
from tests.credits.ledger import add_user, post
from tests.support.database import own_database
from tests.support.jobs import job_context
from tests.support.settings import run_cli


@pytest.fixture
async def own(settings: Settings, service_urls: tuple[str, str]) -> AsyncIterator[Settings]:
    async with own_database(settings, service_urls[0]) as own_settings:
        yield own_settings


async def user_with_entries(sessions: Sessions, *amounts: int) -> uuid.UUID:
    async with unit_of_work(sessions) as db:
        user_id = await add_user(db)
        for amount in amounts:
            await post(db, user_id, EntryKind.ADJUSTMENT, amount, reason="verification test")
        return user_id


async def run_job(settings: Settings, sessions: Sessions) -> list[MutableMapping[str, Any]]:
    """What the daily verification job logs, run once."""
    publisher = AppQueuePublisher(settings)
    try:
        with capture_logs() as logs:
            await verify_credit_ledger(job_context(settings, sessions, publisher))
    finally:
        await publisher.close()
    return logs


async def test_a_drifted_balance_is_found_reported_and_alerted(own: Settings) -> None:
    async with database(own) as sessions:
        kept = await user_with_entries(sessions, 5_000, -1_200)
        drifted = await user_with_entries(sessions, 10_000, 2_500)

        async with sessions() as db:
            assert await verify_ledger(db) == []
        status, output = await run_cli(own, "credits", "verify")
        assert (status, output.strip()) == (
            0,
            "ledger OK: every balance equals the sum of its entries",
        )
        assert [log["event"] for log in await run_job(own, sessions)] == ["ledger_verified"]

        async with unit_of_work(sessions) as db:
            await db.execute(
                text(
                    "UPDATE credit_accounts SET balance_millicents = balance_millicents + 1"
                    " WHERE user_id = :user_id"
                ),
                {"user_id": drifted},
            )

        async with sessions() as db:
            assert await verify_ledger(db) == [Mismatch(drifted, 12_501, 12_500, 12_500)]
        status, output = await run_cli(own, "credits", "verify")
        assert status == 1, output
        assert str(drifted) in output
        assert str(kept) not in output
        [alert] = await run_job(own, sessions)
        assert alert == {
            "event": "ledger_mismatch",
            "log_level": "error",
            "alert": True,
            "user_id": str(drifted),
            "balance_millicents": 12_501,
            "entries_sum_millicents": 12_500,
            "last_balance_after_millicents": 12_500,
        }


async def test_a_latest_entry_that_left_another_balance_is_found(own: Settings) -> None:
    """The sum agrees, but the chain does not: an entry appended (the ledger allows appending)
    with a balance_after that its account never had."""
    async with database(own) as sessions:
        user_id = await user_with_entries(sessions, 7_000)
        async with unit_of_work(sessions) as db:
            await db.execute(
                text(
                    "INSERT INTO credit_entries (id, user_id, kind, amount_millicents,"
                    " balance_after_millicents, idempotency_key, created_at)"
                    " VALUES (:id, :user_id, 'top_up', 3000, 3000, :key, now())"
                ),
                {"id": uuid.uuid4(), "user_id": user_id, "key": f"top_up:{uuid.uuid4()}"},
            )
            await db.execute(
                text(
                    "UPDATE credit_accounts SET balance_millicents = 10000 WHERE user_id = :user_id"
                ),
                {"user_id": user_id},
            )

        async with sessions() as db:
            found = await verify_ledger(db)
        assert Mismatch(user_id, 10_000, 10_000, 3_000) in found
