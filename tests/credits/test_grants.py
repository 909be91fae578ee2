"""Promotional grants: posted with the row they are spent from, spent before paid credit
(soonest expiry first, those that never expire last) by one statement for any number of users,
and at expiry their exact remainder leaves the balance; paid credit never expires."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.credits.models import EntryKind
from computebill.credits.service import (
    Grant,
    active_grants,
    balance,
    expire_due_grants,
    grant_credit,
    spend_grants,
    verify_ledger,
)
from tests.credits.ledger import add_user, grant, post

DOLLAR = 100_000  # millicents
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


async def remaining(db: AsyncSession, *grant_ids: uuid.UUID) -> list[int]:
    """What is left of each grant, in the order asked."""
    rows = await db.execute(
        text(
            "SELECT grant_entry_id, remaining_millicents FROM credit_grants"
            " WHERE grant_entry_id = ANY(:ids)"
        ),
        {"ids": list(grant_ids)},
    )
    left: dict[uuid.UUID, int] = dict(rows.all())
    return [left[grant_id] for grant_id in grant_ids]


async def entries(db: AsyncSession, user_id: uuid.UUID) -> list[tuple[str, int, str]]:
    """The user's ledger in the order it was posted: kind, amount, key."""
    rows = await db.execute(
        text(
            "SELECT kind, amount_millicents, idempotency_key FROM credit_entries"
            " WHERE user_id = :user_id ORDER BY position"
        ),
        {"user_id": user_id},
    )
    return [(kind, amount, key) for kind, amount, key in rows]


@contextmanager
def statements_counted(db: AsyncSession, connection: Any) -> Iterator[list[str]]:
    """The SQL statements sent on the session's connection meanwhile."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(connection, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(connection, "before_cursor_execute", note)


async def test_a_grant_posts_its_entry_and_the_row_it_is_spent_from(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    expires_at = NOW + timedelta(days=30)
    granted = await grant(db_session, user_id, 10 * DOLLAR, expires_at=expires_at, now=NOW)

    assert granted.posted.created
    entry = granted.posted.entry
    assert (entry.kind, entry.amount_millicents, entry.expires_at) == (
        "grant",
        10 * DOLLAR,
        expires_at,
    )
    assert granted.grant == Grant(entry.id, 10 * DOLLAR, 10 * DOLLAR, expires_at, NOW)
    assert await balance(db_session, user_id) == 10 * DOLLAR
    assert await active_grants(db_session, user_id, now=NOW) == [granted.grant]


async def test_a_repeated_grant_answers_the_first_with_what_is_left_of_it(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    posting: dict[str, Any] = {
        "user_id": user_id,
        "amount_millicents": 5 * DOLLAR,
        "idempotency_key": "grant:welcome",
        "expires_at": None,
        "now": NOW,
    }
    first = await grant_credit(db_session, **posting)
    await spend_grants(db_session, {user_id: 2 * DOLLAR}, now=NOW)
    again = await grant_credit(db_session, **posting)

    assert (first.posted.created, again.posted.created) == (True, False)
    assert again.posted.entry == first.posted.entry
    assert again.grant.remaining_millicents == 3 * DOLLAR
    assert await balance(db_session, user_id) == 5 * DOLLAR


@pytest.mark.parametrize(
    ("amount", "expires_at"),
    [
        pytest.param(0, None, id="zero"),
        pytest.param(-DOLLAR, None, id="negative"),
        pytest.param(DOLLAR, NOW, id="expiring-when-posted"),
    ],
)
async def test_a_grant_that_could_never_be_spent_is_refused(
    db_session: AsyncSession, amount: int, expires_at: datetime | None
) -> None:
    user_id = await add_user(db_session)
    with pytest.raises(ValueError, match="grant"):
        await grant(db_session, user_id, amount, expires_at=expires_at, now=NOW)
    assert await entries(db_session, user_id) == []


async def test_usage_spends_the_soonest_expiry_first_and_never_expiring_grants_last(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    forever = await grant(db_session, user_id, 4 * DOLLAR, expires_at=None, now=NOW)
    later = await grant(
        db_session, user_id, 5 * DOLLAR, expires_at=NOW + timedelta(days=2), now=NOW
    )
    sooner = await grant(
        db_session, user_id, 3 * DOLLAR, expires_at=NOW + timedelta(days=1), now=NOW
    )
    # Of two with the same expiry (or none), the older is spent first.
    forever_too = await grant(
        db_session, user_id, DOLLAR, expires_at=None, now=NOW + timedelta(seconds=1)
    )
    ids = [g.grant.grant_entry_id for g in (sooner, later, forever, forever_too)]
    assert [g.grant_entry_id for g in await active_grants(db_session, user_id, now=NOW)] == ids

    await spend_grants(db_session, {user_id: 6 * DOLLAR}, now=NOW)
    assert await remaining(db_session, *ids) == [0, 2 * DOLLAR, 4 * DOLLAR, DOLLAR]

    await spend_grants(db_session, {user_id: 2 * DOLLAR + 1}, now=NOW)
    assert await remaining(db_session, *ids) == [0, 0, 4 * DOLLAR - 1, DOLLAR]

    await spend_grants(db_session, {user_id: 4 * DOLLAR}, now=NOW)
    assert await remaining(db_session, *ids) == [0, 0, 0, DOLLAR - 1]
    assert [g.grant_entry_id for g in await active_grants(db_session, user_id, now=NOW)] == [
        forever_too.grant.grant_entry_id
    ]


async def test_one_call_spends_for_many_users_each_from_their_own_grants(
    db_session: AsyncSession,
) -> None:
    partly, emptied, idle, nothing_charged = [await add_user(db_session) for _ in range(4)]
    no_grants = await add_user(db_session)
    grants = {}
    for user_id in (partly, emptied, idle, nothing_charged):
        first = await grant(db_session, user_id, 2 * DOLLAR, expires_at=None, now=NOW)
        second = await grant(
            db_session, user_id, 3 * DOLLAR, expires_at=NOW + timedelta(hours=1), now=NOW
        )
        grants[user_id] = (second.grant.grant_entry_id, first.grant.grant_entry_id)

    await spend_grants(
        db_session,
        {partly: 4 * DOLLAR, emptied: 7 * DOLLAR, nothing_charged: 0, no_grants: DOLLAR},
        now=NOW,
    )

    assert await remaining(db_session, *grants[partly]) == [0, DOLLAR]
    # More than every grant holds: they are emptied; the rest is paid credit.
    assert await remaining(db_session, *grants[emptied]) == [0, 0]
    assert await remaining(db_session, *grants[idle]) == [3 * DOLLAR, 2 * DOLLAR]
    assert await remaining(db_session, *grants[nothing_charged]) == [3 * DOLLAR, 2 * DOLLAR]
    assert await active_grants(db_session, no_grants, now=NOW) == []


async def test_an_expired_grant_is_not_spent_even_before_the_sweep(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    expired = await grant(
        db_session, user_id, 3 * DOLLAR, expires_at=NOW + timedelta(hours=1), now=NOW
    )
    live = await grant(db_session, user_id, 3 * DOLLAR, expires_at=None, now=NOW)
    at_expiry = NOW + timedelta(hours=1)  # an expiry is the first moment it cannot be spent

    await spend_grants(db_session, {user_id: 2 * DOLLAR}, now=at_expiry)

    ids = (expired.grant.grant_entry_id, live.grant.grant_entry_id)
    assert await remaining(db_session, *ids) == [3 * DOLLAR, DOLLAR]
    assert [g.grant_entry_id for g in await active_grants(db_session, user_id, now=at_expiry)] == [
        live.grant.grant_entry_id
    ]


async def test_no_charges_send_no_statement_and_a_negative_one_is_refused(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    given = await grant(db_session, user_id, DOLLAR, expires_at=None, now=NOW)
    connection = (await db_session.connection()).sync_connection
    with statements_counted(db_session, connection) as sent:
        await spend_grants(db_session, {}, now=NOW)
        await spend_grants(db_session, {user_id: 0}, now=NOW)
    assert sent == []
    with pytest.raises(ValueError, match="positive"):
        await spend_grants(db_session, {user_id: -1}, now=NOW)
    assert await remaining(db_session, given.grant.grant_entry_id) == [DOLLAR]


async def test_ten_thousand_users_are_spent_for_in_one_statement(
    db_session: AsyncSession,
) -> None:
    users = 10_000
    # The users, their accounts, grant entries and grants, written set-based: each user has a
    # grant of 2 $ expiring tomorrow and one of 1 $ that never expires.
    await db_session.execute(
        text(
            """
            CREATE TEMPORARY TABLE bulk ON COMMIT DROP AS
            SELECT gen_random_uuid() AS user_id, gen_random_uuid() AS soon,
                   gen_random_uuid() AS forever, n
            FROM generate_series(1, :users) AS n;
            """
        ),
        {"users": users},
    )
    for statement in (
        "INSERT INTO users (id, email, password_changed_at)"
        " SELECT user_id, 'bulk-' || user_id || '@example.com', :now FROM bulk",
        "INSERT INTO credit_accounts (user_id, balance_millicents)"
        " SELECT user_id, 3 * {dollar} FROM bulk",
        "INSERT INTO credit_entries (id, user_id, kind, amount_millicents,"
        " balance_after_millicents, idempotency_key, expires_at, created_at)"
        " SELECT soon, user_id, 'grant', 2 * {dollar}, 2 * {dollar}, 'grant:' || soon,"
        " CAST(:now AS timestamptz) + interval '1 day', :now FROM bulk"
        " UNION ALL SELECT forever, user_id, 'grant', {dollar}, 3 * {dollar},"
        " 'grant:' || forever, NULL, :now FROM bulk",
        "INSERT INTO credit_grants (grant_entry_id, user_id, amount_millicents,"
        " remaining_millicents, expires_at, created_at)"
        " SELECT soon, user_id, 2 * {dollar}, 2 * {dollar},"
        " CAST(:now AS timestamptz) + interval '1 day', :now FROM bulk"
        " UNION ALL SELECT forever, user_id, {dollar}, {dollar}, NULL, :now FROM bulk",
    ):
        await db_session.execute(text(statement.format(dollar=DOLLAR)), {"now": NOW})
    # User n is charged n × 1 m¢ (up to 10 ¢) plus, for every third user, 2.5 $.
    charged = await db_session.execute(text("SELECT user_id, n FROM bulk ORDER BY n"))
    charges = {user_id: n + (DOLLAR * 5 // 2 if n % 3 == 0 else 0) for user_id, n in charged}

    connection = (await db_session.connection()).sync_connection
    with statements_counted(db_session, connection) as sent:
        await spend_grants(db_session, charges, now=NOW)
    assert len(sent) == 1

    left = await db_session.execute(
        text(
            """
            SELECT b.n, s.remaining_millicents, f.remaining_millicents
            FROM bulk b
            JOIN credit_grants s ON s.grant_entry_id = b.soon
            JOIN credit_grants f ON f.grant_entry_id = b.forever
            """
        )
    )
    for n, soon, forever in left:
        if n % 3 == 0:  # 2.5 $ + n m¢: the soon one emptied, the rest from the other
            assert (soon, forever) == (0, DOLLAR // 2 - n), n
        else:
            assert (soon, forever) == (2 * DOLLAR - n, DOLLAR), n


async def test_at_expiry_exactly_the_unused_rest_leaves_the_balance_once(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    await post(db_session, user_id, EntryKind.TOP_UP, 20 * DOLLAR, now=NOW)
    expires_at = NOW + timedelta(days=7)
    granted = await grant(db_session, user_id, 10 * DOLLAR, expires_at=expires_at, now=NOW)
    forever = await grant(db_session, user_id, 2 * DOLLAR, expires_at=None, now=NOW)
    # Usage of 3 $, as the settlement posts it: the charge, then the grants it spends.
    await post(db_session, user_id, EntryKind.USAGE, -3 * DOLLAR, now=NOW + timedelta(days=1))
    await spend_grants(db_session, {user_id: 3 * DOLLAR}, now=NOW + timedelta(days=1))
    assert await balance(db_session, user_id) == 29 * DOLLAR

    # Not yet: a second before its expiry, nothing expires.
    before = await expire_due_grants(db_session, now=expires_at - timedelta(seconds=1))
    assert user_id not in {e.user_id for e in before}

    swept_at = expires_at + timedelta(seconds=30)
    expired = [e for e in await expire_due_grants(db_session, now=swept_at) if e.user_id == user_id]
    grant_id = granted.grant.grant_entry_id
    assert [(e.grant_entry_id, e.expired_millicents) for e in expired] == [(grant_id, 7 * DOLLAR)]
    assert (await entries(db_session, user_id))[-1] == ("expiry", -7 * DOLLAR, f"expiry:{grant_id}")
    # What is left: the paid 20 $ and the grant that never expires, 2 $.
    assert await balance(db_session, user_id) == 22 * DOLLAR
    assert await remaining(db_session, grant_id, forever.grant.grant_entry_id) == [0, 2 * DOLLAR]
    expired_at = await db_session.scalar(
        text("SELECT expired_at FROM credit_grants WHERE grant_entry_id = :id"), {"id": grant_id}
    )
    assert expired_at == swept_at
    assert user_id not in {m.user_id for m in await verify_ledger(db_session)}

    # Again, and much later: nothing more leaves; paid credit and the grant without an expiry stay.
    ledger = await entries(db_session, user_id)
    again = await expire_due_grants(db_session, now=swept_at + timedelta(days=3650))
    assert user_id not in {e.user_id for e in again}
    assert await entries(db_session, user_id) == ledger
    assert await balance(db_session, user_id) == 22 * DOLLAR


async def test_a_grant_spent_to_nothing_leaves_nothing_at_expiry(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    expires_at = NOW + timedelta(hours=1)
    await grant(db_session, user_id, DOLLAR, expires_at=expires_at, now=NOW)
    await post(db_session, user_id, EntryKind.USAGE, -DOLLAR, now=NOW)
    await spend_grants(db_session, {user_id: DOLLAR}, now=NOW)

    expired = await expire_due_grants(db_session, now=expires_at)
    assert user_id not in {e.user_id for e in expired}
    assert [kind for kind, _, _ in await entries(db_session, user_id)] == ["grant", "usage"]


async def test_a_sweep_expires_at_most_its_batch_the_oldest_first(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    # Far in the past, so no other test's grant is older.
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    made = [
        await grant(
            db_session,
            user_id,
            DOLLAR + n,
            expires_at=long_ago + timedelta(minutes=3 - n),
            now=long_ago - timedelta(days=1),
        )
        for n in range(3)
    ]
    first = await expire_due_grants(db_session, now=NOW, limit=2)
    assert [e.expired_millicents for e in first] == [DOLLAR + 2, DOLLAR + 1]
    second = [
        e for e in await expire_due_grants(db_session, now=NOW, limit=2) if e.user_id == user_id
    ]
    assert [e.grant_entry_id for e in second] == [made[0].grant.grant_entry_id]
    assert await balance(db_session, user_id) == 0


async def test_the_database_refuses_a_grant_spent_beyond_what_it_holds(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    given = await grant(db_session, user_id, DOLLAR, expires_at=None, now=NOW)
    with pytest.raises(IntegrityError):
        async with db_session.begin_nested():
            await db_session.execute(
                text(
                    "UPDATE credit_grants SET remaining_millicents = -1 WHERE grant_entry_id = :id"
                ),
                {"id": given.grant.grant_entry_id},
            )
