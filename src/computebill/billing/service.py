"""Billing: what a customer's money looks like right now, from the credit ledger and the
metering of their running instances together (docs/architecture.md §4, pay as you go)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import Uuid

from computebill.credits.service import Grant, active_grants
from computebill.instances.metering import LiveFigures, live_figures
from computebill.instances.service import CREDIT_CAP_REASON
from computebill.money import cents_rounded_down


@dataclass(frozen=True, slots=True)
class CreditSummary:
    figures: LiveFigures
    grants: list[Grant]  # those that can still be spent, in the order they will be


async def credit_summary(
    db: AsyncConnection, user_id: uuid.UUID, *, now: datetime
) -> CreditSummary:
    """The live balance, burn rate, runway and grants of an account (two statements)."""
    figures = await live_figures(db, user_id, now=now)
    return CreditSummary(figures=figures, grants=await active_grants(db, user_id, now=now))


# Daily spend: usage summed per UTC day -----------------------------------------------------------

SPEND_DAYS = 30  # the billing page's chart

_DAY = timedelta(days=1)
_SINCE = bindparam("since", type_=DateTime(timezone=True))
_UNTIL = bindparam("until", type_=DateTime(timezone=True))
# Every day of the window, the days without usage as zero: the entries of the window are summed
# per UTC day (the connection runs in UTC, so `date_trunc` cuts at UTC midnight), then joined to
# the series of days. Served by the ledger's (user, created_at) index.
_DAILY_USAGE = text(
    """
WITH spent AS (
    SELECT date_trunc('day', e.created_at) AS day, -SUM(e.amount_millicents)::bigint AS millicents
    FROM credit_entries e
    WHERE e.user_id = :user_id AND e.kind = 'usage'
      AND e.created_at >= :since AND e.created_at < :until
    GROUP BY 1
)
SELECT series.day, COALESCE(spent.millicents, 0)::bigint AS millicents
FROM generate_series(:since, :until - interval '1 day', interval '1 day') AS series(day)
LEFT JOIN spent ON spent.day = series.day
ORDER BY series.day
"""
).bindparams(bindparam("user_id", type_=Uuid), _SINCE, _UNTIL)


class DaySpend(NamedTuple):
    day: date  # a UTC day
    millicents: int  # the usage charged that day (positive)


async def daily_usage(
    db: AsyncConnection, user_id: uuid.UUID, *, now: datetime, days: int = SPEND_DAYS
) -> list[DaySpend]:
    """What usage entries charged on each of the last `days` UTC days, today included, oldest
    first; a day without usage is zero (one statement). The days add up exactly to the usage
    entries of the window."""
    until = datetime.combine(now.astimezone(UTC).date() + _DAY, time(), tzinfo=UTC)
    found = await db.execute(
        _DAILY_USAGE, {"user_id": user_id, "since": until - days * _DAY, "until": until}
    )
    return [DaySpend(row.day.astimezone(UTC).date(), row.millicents) for row in found]


# The page header: the balance and whether the credit cap stopped instances ----------------------

CREDIT_STOP_NOTICE = timedelta(hours=24)  # how long the banner stays once credit was added

# The latest moment the credit cap stopped one of the account's instances, and whether credit
# was bought since.
_LAST_CREDIT_STOP = text(
    """
SELECT stop.at,
    EXISTS (SELECT 1 FROM credit_entries e
            WHERE e.user_id = :user_id AND e.kind = 'top_up' AND e.created_at > stop.at)
        AS topped_up
FROM (SELECT max(c.changed_at) AS at
      FROM instances i JOIN instance_status_changes c ON c.instance_id = i.id
      WHERE i.user_id = :user_id AND i.billing = 'pay_as_you_go' AND c.reason = :reason) stop
"""
).bindparams(bindparam("user_id", type_=Uuid), bindparam("reason", value=CREDIT_CAP_REASON))


@dataclass(frozen=True, slots=True)
class HeaderFigures:
    """What the layout shows of a signed-in customer's money on every page."""

    balance_cents: int  # the live balance, rounded down
    credit_stopped: bool  # the credit cap stopped their instances, and it still matters


async def header_figures(db: AsyncSession, user_id: uuid.UUID, *, now: datetime) -> HeaderFigures:
    """The live balance, and whether to say that the credit cap stopped the account's
    instances: it did, and the balance is still not above zero, or it was within
    `CREDIT_STOP_NOTICE` and no top-up came since (two statements)."""
    figures = await live_figures(db, user_id, now=now)
    live = figures.live_balance_millicents
    stop = (await db.execute(_LAST_CREDIT_STOP, {"user_id": user_id})).one()
    stopped = stop.at is not None and (
        live <= 0 or (stop.at > now - CREDIT_STOP_NOTICE and not stop.topped_up)
    )
    return HeaderFigures(balance_cents=cents_rounded_down(live), credit_stopped=stopped)
