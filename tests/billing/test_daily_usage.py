"""`billing.service.daily_usage`: the usage entries summed per UTC day over the last 30 days,
today included, with the days without usage as zero; the days add up exactly to the entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.billing.service import daily_usage
from computebill.credits.models import CreditEntry, EntryKind
from tests.credits.ledger import add_user, post

NOW = datetime(2026, 11, 30, 15, 30, tzinfo=UTC)
TODAY = NOW.date()


def midnight(days_ago: int) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(), tzinfo=UTC)


async def test_usage_is_summed_per_utc_day_with_empty_days_as_zero(
    db_session: AsyncSession,
) -> None:
    user_id, other = await add_user(db_session), await add_user(db_session)
    await post(
        db_session,
        user_id,
        EntryKind.TOP_UP,
        90_000_000,
        payment_intent_id="pi_d",
        now=midnight(40),
    )
    charges = [
        (NOW - timedelta(minutes=1), 1_234),  # today
        (midnight(0), 1),  # today's first microsecond
        (midnight(0) - timedelta(microseconds=1), 7_777),  # yesterday's last
        (midnight(1) + timedelta(hours=5), 10_000_001),
        (midnight(29), 3),  # the window's first day
        (midnight(29) - timedelta(seconds=1), 999_999),  # before the window
        (midnight(12) + timedelta(hours=23), 5),
        (midnight(12) + timedelta(hours=23, minutes=1), 6),
    ]
    for at, amount in charges:
        await post(db_session, user_id, EntryKind.USAGE, -amount, now=at)
    await post(db_session, other, EntryKind.TOP_UP, 1_000_000, payment_intent_id="pi_o", now=NOW)
    await post(db_session, other, EntryKind.USAGE, -500, now=NOW)  # someone else's
    await post(db_session, user_id, EntryKind.UNUSED_TIME, 42, now=NOW)  # not usage

    days = await daily_usage(await db_session.connection(), user_id, now=NOW)

    assert [day.day for day in days] == [TODAY - timedelta(days=n) for n in range(29, -1, -1)]
    spent = {day.day: day.millicents for day in days}
    assert spent[TODAY] == 1_235
    assert spent[TODAY - timedelta(days=1)] == 7_777 + 10_000_001
    assert spent[TODAY - timedelta(days=12)] == 11
    assert spent[TODAY - timedelta(days=29)] == 3
    assert sum(spent.values()) == 1_235 + 7_777 + 10_000_001 + 11 + 3
    assert sum(1 for millicents in spent.values() if millicents) == 4  # the rest are zero

    # Exactly what the ledger's usage entries of the window charged.
    charged = await db_session.scalar(
        select(-func.sum(CreditEntry.amount_millicents)).where(
            CreditEntry.user_id == user_id,
            CreditEntry.kind == EntryKind.USAGE,
            CreditEntry.created_at >= midnight(29),
        )
    )
    assert sum(spent.values()) == charged


async def test_a_customer_without_usage_has_thirty_days_of_zero(db_session: AsyncSession) -> None:
    user_id = await add_user(db_session)
    days = await daily_usage(await db_session.connection(), user_id, now=NOW)
    assert len(days) == 30
    assert days[-1].day == TODAY
    assert {day.millicents for day in days} == {0}
