"""Postings to one account from many transactions at once: each waits for the account's lock,
so none is lost and the balances they leave form one unbroken chain; and a key posted by many at
once is posted once. The transactions are held at the lock until all of them wait there, so the
race is certain, not left to the scheduler."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.credits.models import CreditEntry, EntryKind
from computebill.credits.service import Posted, balance
from computebill.db import create_sessionmaker, unit_of_work
from computebill.devserver.scratch import Sessions
from tests.credits.ledger import add_user, post

RACERS = 12

WAITING_ON_A_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


async def committed_user(sessions: Sessions) -> uuid.UUID:
    async with unit_of_work(sessions) as db:
        return await add_user(db)


async def top_up(sessions: Sessions, user_id: uuid.UUID, amount: int, key: str) -> Posted:
    """A top-up in a transaction of its own."""
    async with unit_of_work(sessions) as db:
        return await post(db, user_id, EntryKind.TOP_UP, amount, idempotency_key=key)


async def race_behind_a_first_posting(
    sessions: Sessions, user_id: uuid.UUID, racers: list[Awaitable[Posted]]
) -> list[Posted]:
    """The user's first posting opens the account and keeps its transaction open until every
    racer waits for it (on the new account's row); then it commits and the racers go."""
    async with unit_of_work(sessions) as first:
        await post(first, user_id, EntryKind.GRANT, 1)
        running = [asyncio.ensure_future(racer) for racer in racers]
        deadline = time.monotonic() + 20
        while await lock_waiters(sessions) < len(racers):
            assert time.monotonic() < deadline, "the racers never all waited for the lock"
            assert not any(task.done() for task in running), "a racer did not wait"
            await asyncio.sleep(0.02)
    return list(await asyncio.gather(*running))


async def lock_waiters(sessions: Sessions) -> int:
    """Sessions of the test database waiting for a lock now. A transaction of its own each time:
    PostgreSQL shows a transaction the same `pg_stat_activity` from its first read on."""
    async with sessions() as watcher:
        return int(await watcher.scalar(WAITING_ON_A_LOCK) or 0)


async def test_concurrent_postings_are_each_counted_once_in_one_chain(
    engine: AsyncEngine,
) -> None:
    sessions = create_sessionmaker(engine)
    user_id = await committed_user(sessions)
    amounts = [1_000 * (n + 1) + n for n in range(RACERS)]

    posted = await race_behind_a_first_posting(
        sessions,
        user_id,
        [
            top_up(sessions, user_id, amount, f"top_up:pi_race_{uuid.uuid4().hex}")
            for amount in amounts
        ],
    )

    assert all(p.created for p in posted)
    async with sessions() as db:
        entries = (
            await db.scalars(
                select(CreditEntry)
                .where(CreditEntry.user_id == user_id)
                .order_by(CreditEntry.position)
            )
        ).all()
        assert await balance(db, user_id) == 1 + sum(amounts)
    assert sorted(e.amount_millicents for e in entries) == sorted([1, *amounts])
    # Each posting starts from the balance the one before it left: no posting read a stale one.
    left = 0
    for entry in entries:
        left += entry.amount_millicents
        assert entry.balance_after_millicents == left
    assert left == 1 + sum(amounts)


async def test_a_key_posted_by_many_at_once_is_posted_once(engine: AsyncEngine) -> None:
    sessions = create_sessionmaker(engine)
    user_id = await committed_user(sessions)
    key = f"top_up:pi_same_{uuid.uuid4().hex}"

    posted = await race_behind_a_first_posting(
        sessions, user_id, [top_up(sessions, user_id, 250_000, key) for _ in range(RACERS)]
    )

    assert [p.created for p in posted].count(True) == 1
    assert {p.entry.id for p in posted} == {posted[0].entry.id}
    async with sessions() as db:
        count = await db.scalar(
            select(func.count()).select_from(CreditEntry).where(CreditEntry.idempotency_key == key)
        )
        assert count == 1
        assert await balance(db, user_id) == 1 + 250_000
