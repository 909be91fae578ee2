"""The ledger's postings: each moves the balance by its amount and records the balance it left,
a key posts once, and the database itself refuses what the ledger must never hold."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.credits.models import EntryKind
from computebill.credits.service import IdempotencyKeyReused, balance, post_entry
from tests.credits.ledger import add_user, post
from tests.support.orders import add_paid_order


async def test_each_posting_moves_the_balance_and_records_what_it_left(
    db_session: AsyncSession,
) -> None:
    user_id = await add_user(db_session)
    now = datetime.now(UTC)
    order = await add_paid_order(db_session, user_id, [("nvidia-h100", 1, 2)], now=now)
    assert await balance(db_session, user_id) == 0

    top_up = await post(
        db_session,
        user_id,
        EntryKind.TOP_UP,
        2_500_000,
        idempotency_key="top_up:pi_first",
        payment_intent_id="pi_first",
    )
    given_back = await post(
        db_session, user_id, EntryKind.UNUSED_TIME, 1_234, order_id=order.id, now=now
    )
    charged = await post(db_session, user_id, EntryKind.USAGE, -700_001)

    assert [p.created for p in (top_up, given_back, charged)] == [True, True, True]
    assert [p.entry.balance_after_millicents for p in (top_up, given_back, charged)] == [
        2_500_000,
        2_501_234,
        1_801_233,
    ]
    assert (top_up.entry.kind, top_up.entry.idempotency_key) == ("top_up", "top_up:pi_first")
    assert top_up.entry.payment_intent_id == "pi_first"
    assert (given_back.entry.order_id, given_back.entry.created_at) == (order.id, now)
    assert top_up.entry.position < given_back.entry.position < charged.entry.position
    assert await balance(db_session, user_id) == 1_801_233


async def test_a_key_posts_once_and_answers_its_entry_again(db_session: AsyncSession) -> None:
    user_id = await add_user(db_session)
    posting: dict[str, Any] = {
        "user_id": user_id,
        "kind": EntryKind.TOP_UP,
        "amount_millicents": 1_000_000,
        "idempotency_key": "top_up:pi_twice",
        "now": datetime.now(UTC),
    }
    first = await post_entry(db_session, **posting)
    again = await post_entry(db_session, **posting)

    assert (first.created, again.created) == (True, False)
    assert again.entry == first.entry
    assert await balance(db_session, user_id) == 1_000_000


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"amount_millicents": 1_000_001}, id="another-amount"),
        pytest.param({"kind": EntryKind.GRANT}, id="another-kind"),
        pytest.param({"user_id": None}, id="another-user"),
    ],
)
async def test_a_key_posted_before_with_other_content_is_refused(
    db_session: AsyncSession, changed: dict[str, Any]
) -> None:
    user_id = await add_user(db_session)
    posting: dict[str, Any] = {
        "user_id": user_id,
        "kind": EntryKind.TOP_UP,
        "amount_millicents": 1_000_000,
        "idempotency_key": f"top_up:pi_{uuid.uuid4().hex}",
        "now": datetime.now(UTC),
    }
    await post_entry(db_session, **posting)
    if "user_id" in changed:
        changed = {"user_id": await add_user(db_session)}

    with pytest.raises(IdempotencyKeyReused, match="was posted as top_up of 1000000"):
        await post_entry(db_session, **(posting | changed))
    assert await balance(db_session, user_id) == 1_000_000


async def test_the_database_refuses_to_change_or_remove_an_entry(db_session: AsyncSession) -> None:
    user_id = await add_user(db_session)
    posted = await post(db_session, user_id, EntryKind.GRANT, 500_000)
    for statement in (
        "UPDATE credit_entries SET amount_millicents = 900000 WHERE id = :id",
        "DELETE FROM credit_entries WHERE id = :id",
    ):
        with pytest.raises(
            IntegrityError, match=r"append-only \(\w+ refused\): corrections are new entries"
        ):
            async with db_session.begin_nested():
                await db_session.execute(text(statement), {"id": posted.entry.id})
    kept = await db_session.execute(
        text("SELECT amount_millicents FROM credit_entries WHERE id = :id"),
        {"id": posted.entry.id},
    )
    assert kept.scalar_one() == 500_000


@pytest.mark.parametrize(
    ("kind", "amount", "details", "constraint"),
    [
        pytest.param(EntryKind.ADJUSTMENT, -100, {}, "adjustment_has_reason", id="no-reason"),
        pytest.param(
            EntryKind.ADJUSTMENT, 100, {"reason": "  "}, "adjustment_has_reason", id="blank-reason"
        ),
        pytest.param(EntryKind.TOP_UP, 0, {}, "amount_not_zero", id="zero"),
        pytest.param(EntryKind.USAGE, 100, {}, "amount_sign_fits_kind", id="usage-crediting"),
        pytest.param(EntryKind.TOP_UP, -100, {}, "amount_sign_fits_kind", id="top-up-charging"),
        pytest.param(
            EntryKind.TOP_UP,
            100,
            {"expires_at": datetime.now(UTC) + timedelta(days=30)},
            "only_grants_expire",
            id="top-up-expiring",
        ),
    ],
)
async def test_the_database_refuses_an_entry_the_ledger_must_not_hold(
    db_session: AsyncSession,
    kind: EntryKind,
    amount: int,
    details: dict[str, Any],
    constraint: str,
) -> None:
    user_id = await add_user(db_session)
    with pytest.raises(IntegrityError, match=f"ck_credit_entries_{constraint}"):
        async with db_session.begin_nested():
            await post(db_session, user_id, kind, amount, **details)
    assert await balance(db_session, user_id) == 0


async def test_an_adjustment_with_a_reason_and_an_expiring_grant_are_held(
    db_session: AsyncSession,
) -> None:
    user_id, admin_id = await add_user(db_session), await add_user(db_session)
    expires_at = datetime.now(UTC) + timedelta(days=30)
    grant = await post(db_session, user_id, EntryKind.GRANT, 1_000_000, expires_at=expires_at)
    adjustment = await post(
        db_session,
        user_id,
        EntryKind.ADJUSTMENT,
        -250_000,
        admin_user_id=admin_id,
        reason="goodwill credit granted twice",
    )
    assert grant.entry.expires_at == expires_at
    assert (adjustment.entry.admin_user_id, adjustment.entry.reason) == (
        admin_id,
        "goodwill credit granted twice",
    )
    assert adjustment.entry.balance_after_millicents == 750_000
    assert await balance(db_session, user_id) == 750_000
