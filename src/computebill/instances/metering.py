"""Metering of pay-as-you-go instances (docs/architecture.md §4, pay as you go): every second an
instance runs is charged to its owner's credit balance, exactly, whatever crashes or repeats.

- Owed through second s of a run: floor(rate × s / 3600) millicents. A settlement posts the
  difference from the last settled second as one `usage` entry and advances the instance's
  `billed_through_seconds` in the same statement, so the charged intervals are a contiguous,
  non-overlapping cover of the run, and repeating a settlement at the same second posts nothing.
- Reads of the balance subtract what has run but is not settled yet: the live balance.
- A launch is admitted only when the live balance lasts `MIN_RUNWAY_SECONDS` at the new burn rate.
- The credit cap finds accounts whose live balance is down to `STOP_MARGIN_SECONDS` of their burn
  rate; the instances service stops their instances.
- A monthly budget counts the month's usage entries and what is not settled yet; at its limit a
  launch is refused, and the billing domain alerts and, if asked, stops (§4, budgets).

Statements are set-based (a pass over every running instance is three statements) and written
in SQL: their window functions and data-modifying CTEs read better so than built up in Core.
Locks: instances first, then accounts, each in id order, by every writer (so none deadlocks).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import Date, DateTime, Uuid

from computebill.credits import service as credits
from computebill.errors import AppError
from computebill.money import MILLICENTS_PER_CENT

SECONDS_PER_HOUR = 3600


def owed_millicents(rate_millicents_per_hour: int, seconds: int) -> int:
    """What `seconds` of a run at this rate cost, rounded down to the millicent."""
    return rate_millicents_per_hour * seconds // SECONDS_PER_HOUR


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


# The whole seconds an instance `i` has run at :now (at most to its safety stop, never before
# what is settled), and what of them is not settled yet. One text, used by every statement.
_THROUGH = (
    "GREATEST(i.billed_through_seconds, FLOOR(EXTRACT(EPOCH FROM"
    " LEAST(:now, COALESCE(i.expires_at, :now)) - i.started_at))::bigint)"
)
_UNSETTLED = (
    f"(i.rate_millicents_per_hour * {_THROUGH} / 3600"
    " - i.rate_millicents_per_hour * i.billed_through_seconds / 3600)"
)
_METERED = "i.billing = 'pay_as_you_go'"
_NOW = bindparam("now", type_=DateTime(timezone=True))
_IDS = bindparam("ids", type_=ARRAY(Uuid))


# Settling --------------------------------------------------------------------------------------

_LOCK_ALL_RUNNING = text(
    f"SELECT i.id, i.user_id FROM instances i WHERE {_METERED} AND i.status = 'running'"
    " ORDER BY i.id FOR UPDATE SKIP LOCKED"
)
_LOCK_RUNNING = text(
    f"SELECT i.id, i.user_id FROM instances i WHERE {_METERED} AND i.status = 'running'"
    " AND i.id = ANY(:ids) ORDER BY i.id FOR UPDATE"
).bindparams(_IDS)

# With the instances and their accounts locked, and so from a snapshot taken after the locks:
# the charges, their entries (each `balance_after` the account's balance less the charges posted
# before it in the statement), the instances' settled seconds and the balances. An instance whose
# charge rounds to nothing keeps its settled second, so the next charge starts there.
_SETTLE = text(
    f"""
WITH charge AS (
    SELECT i.id, i.user_id, {_THROUGH} AS through, {_UNSETTLED} AS amount
    FROM instances i
    WHERE i.id = ANY(:ids) AND {_METERED} AND i.status = 'running'
), due AS (
    SELECT charge.*, a.balance_millicents
        - SUM(charge.amount) OVER (PARTITION BY charge.user_id ORDER BY charge.id)
        AS balance_after
    FROM charge JOIN credit_accounts a ON a.user_id = charge.user_id
    WHERE charge.amount > 0
), posted AS (
    INSERT INTO credit_entries
        (id, user_id, kind, amount_millicents, balance_after_millicents, idempotency_key,
         instance_id, created_at)
    SELECT gen_random_uuid(), due.user_id, 'usage', -due.amount, due.balance_after,
           'usage:' || due.id || ':' || due.through, due.id, :now
    FROM due ORDER BY due.user_id, due.id
    RETURNING instance_id, user_id, amount_millicents
), advanced AS (
    UPDATE instances SET billed_through_seconds = due.through, updated_at = :now
    FROM due JOIN posted ON posted.instance_id = due.id
    WHERE instances.id = due.id
    RETURNING instances.id
), totals AS (
    SELECT user_id, -SUM(amount_millicents)::bigint AS charged FROM posted GROUP BY user_id
)
UPDATE credit_accounts a
SET balance_millicents = a.balance_millicents - totals.charged, updated_at = :now
FROM totals
WHERE a.user_id = totals.user_id
RETURNING a.user_id, totals.charged, (SELECT count(*) FROM advanced) AS instances
"""
).bindparams(_IDS, _NOW)

_LOCK_ACCOUNTS = text(
    "SELECT user_id FROM credit_accounts WHERE user_id = ANY(:user_ids) ORDER BY user_id FOR UPDATE"
).bindparams(bindparam("user_ids", type_=ARRAY(Uuid)))


@dataclass(frozen=True, slots=True)
class Settlement:
    instances: int  # running instances looked at
    charged_instances: int  # of them, those that owed a whole millicent or more
    charges: dict[uuid.UUID, int]  # per account, the millicents charged


async def _settle_locked(
    db: AsyncSession, locked: list[tuple[uuid.UUID, uuid.UUID]], *, now: datetime
) -> Settlement:
    if not locked:
        return Settlement(0, 0, {})
    users = sorted({user_id for _, user_id in locked})
    found = set(await db.scalars(_LOCK_ACCOUNTS, {"user_ids": users}))
    for user_id in users:
        if user_id not in found:  # the launch's admission opened it; this guards one that never was
            await credits.lock_account(db, user_id)
    rows = (await db.execute(_SETTLE, {"ids": [i for i, _ in locked], "now": now})).all()
    charges = {row.user_id: row.charged for row in rows}
    # Whose money it was: grants are spent first (the accounts are still locked here).
    await credits.spend_grants(db, charges, now=now)
    return Settlement(
        instances=len(locked),
        charged_instances=rows[0].instances if rows else 0,
        charges=charges,
    )


async def settle(db: AsyncSession, instance_ids: list[uuid.UUID], *, now: datetime) -> Settlement:
    """Charge these instances' run up to `now` (those running and pay as you go), waiting for
    their locks: for a stop, which settles its instance to the second in its transaction."""
    locked = (await db.execute(_LOCK_RUNNING, {"ids": instance_ids})).all()
    return await _settle_locked(db, [(row.id, row.user_id) for row in locked], now=now)


async def settle_all(db: AsyncSession, *, now: datetime) -> Settlement:
    """One settlement pass over every running pay-as-you-go instance, in the caller's
    transaction. Instances another transaction holds (a stop settling them, another pass) are
    skipped: they are settled there, or by the next pass."""
    locked = (await db.execute(_LOCK_ALL_RUNNING)).all()
    return await _settle_locked(db, [(row.id, row.user_id) for row in locked], now=now)


# Live figures -----------------------------------------------------------------------------------

# Per account with live pay-as-you-go instances: what they have run and not settled, the burn
# rate (running ones), and the rate committed to (running and provisioning: admission counts
# those about to run).
_LIVE = f"""
SELECT i.user_id,
    COALESCE(SUM({_UNSETTLED}) FILTER (WHERE i.status = 'running'), 0)::bigint AS unsettled,
    COALESCE(SUM(i.rate_millicents_per_hour) FILTER (WHERE i.status = 'running'), 0)::bigint
        AS burn,
    SUM(i.rate_millicents_per_hour)::bigint AS committed
FROM instances i
WHERE {_METERED} AND i.status IN ('provisioning', 'running') {{where}}
GROUP BY i.user_id
"""
_ACCOUNT_FIGURES = text(
    "SELECT COALESCE((SELECT balance_millicents FROM credit_accounts WHERE user_id = :user_id), 0)"
    " AS balance, COALESCE(live.unsettled, 0) AS unsettled, COALESCE(live.burn, 0) AS burn,"
    " COALESCE(live.committed, 0) AS committed"
    f" FROM (SELECT 1) one LEFT JOIN ({_LIVE.format(where='AND i.user_id = :user_id')}) live"
    " ON true"
).bindparams(bindparam("user_id", type_=Uuid), _NOW)


@dataclass(frozen=True, slots=True)
class LiveFigures:
    """An account's money as of `at`, to the millicent."""

    at: datetime
    balance_millicents: int  # as the ledger stands
    unsettled_millicents: int  # run by its instances and not settled yet
    burn_millicents_per_hour: int  # Σ rates of its running pay-as-you-go instances
    committed_millicents_per_hour: int  # the same with those still provisioning

    @property
    def live_balance_millicents(self) -> int:
        return self.balance_millicents - self.unsettled_millicents

    @property
    def runway_seconds(self) -> int | None:
        """How long the live balance lasts at the burn rate; None while nothing burns."""
        if self.burn_millicents_per_hour == 0:
            return None
        live = max(self.live_balance_millicents, 0)
        return live * SECONDS_PER_HOUR // self.burn_millicents_per_hour

    @property
    def exhausts_at(self) -> datetime | None:
        runway = self.runway_seconds
        return None if runway is None else self.at + timedelta(seconds=runway)

    def seconds_until_cap(self, margin_seconds: int) -> int | None:
        """How long until the live balance is down to `margin_seconds` of the burn rate (0: it
        is); None while nothing burns."""
        if self.burn_millicents_per_hour == 0:
            return None if self.live_balance_millicents > 0 else 0
        margin = _ceil_div(self.burn_millicents_per_hour * margin_seconds, SECONDS_PER_HOUR)
        above = self.live_balance_millicents - margin
        return max(above * SECONDS_PER_HOUR // self.burn_millicents_per_hour, 0)


# The same figures for every account that burns (a running pay-as-you-go instance).
_BURNING_FIGURES = text(
    "SELECT live.user_id, COALESCE(a.balance_millicents, 0) AS balance, live.unsettled,"
    " live.burn, live.committed"
    f" FROM ({_LIVE.format(where='')}) live"
    " LEFT JOIN credit_accounts a ON a.user_id = live.user_id"
    " WHERE live.burn > 0 ORDER BY live.user_id"
).bindparams(_NOW)


def _figures(row: Row[Any], now: datetime) -> LiveFigures:
    return LiveFigures(
        at=now,
        balance_millicents=row.balance,
        unsettled_millicents=row.unsettled,
        burn_millicents_per_hour=row.burn,
        committed_millicents_per_hour=row.committed,
    )


async def live_figures(
    db: AsyncSession | AsyncConnection, user_id: uuid.UUID, *, now: datetime
) -> LiveFigures:
    """The account's balance less what has run and is not settled, its burn rate and runway
    (one statement)."""
    row = (await db.execute(_ACCOUNT_FIGURES, {"user_id": user_id, "now": now})).one()
    return _figures(row, now)


async def burning_accounts(
    db: AsyncSession | AsyncConnection, *, now: datetime
) -> dict[uuid.UUID, LiveFigures]:
    """The live figures of every account with a running pay-as-you-go instance, by user, in
    one statement over the live instances (for the runway alerts)."""
    rows = await db.execute(_BURNING_FIGURES, {"now": now})
    return {row.user_id: _figures(row, now) for row in rows}


# The live balances of a few accounts (the auto-recharge check's candidates), with or without
# live instances.
_LIVE_BALANCES = text(
    "SELECT u.user_id, COALESCE(a.balance_millicents, 0) - COALESCE(live.unsettled, 0) AS live"
    " FROM unnest(:ids) AS u(user_id)"
    " LEFT JOIN (SELECT user_id, balance_millicents FROM credit_accounts"
    " WHERE user_id = ANY(:ids)) a ON a.user_id = u.user_id"
    f" LEFT JOIN ({_LIVE.format(where='AND i.user_id = ANY(:ids)')}) live"
    " ON live.user_id = u.user_id"
).bindparams(_IDS, _NOW)


async def live_balances(
    db: AsyncSession | AsyncConnection, user_ids: list[uuid.UUID], *, now: datetime
) -> dict[uuid.UUID, int]:
    """Each account's live balance in millicents (the ledger's less what has run and is not
    settled), in one statement."""
    if not user_ids:
        return {}
    rows = await db.execute(_LIVE_BALANCES, {"ids": user_ids, "now": now})
    return {row.user_id: row.live for row in rows}


# Admission -------------------------------------------------------------------------------------


class InsufficientCredit(AppError):
    """The live balance does not cover the launch; `shortfall_cents` says how much more."""

    status = 402
    code = "insufficient_credit"


class BudgetExceeded(AppError):
    """The account's usage this month has reached its budget: no new pay-as-you-go launch."""

    status = 402
    code = "budget_exceeded"


async def admit_launch(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    rate_millicents_per_hour: int,
    min_runway_seconds: int,
    now: datetime,
) -> None:
    """Refuse (402) a launch once the month's usage has reached the account's budget
    (`budget_exceeded`), or when the live balance cannot run it for `min_runway_seconds` at the
    account's new burn rate (`insufficient_credit`). Holds the account's lock to the end of the
    caller's transaction, so two launches of one account are judged one after the other."""
    await credits.lock_account(db, user_id)
    budget = await budget_spend(db, user_id, now=now)
    if budget is not None and budget.exceeded:
        raise BudgetExceeded(
            f"This month's usage has reached your budget of {budget.monthly_limit_cents} cents;"
            " raise the budget to launch more.",
            extensions={
                "monthly_limit_cents": budget.monthly_limit_cents,
                "spent_millicents": budget.spent_millicents,
            },
        )
    figures = await live_figures(db, user_id, now=now)  # read after the lock: nothing moves now
    rate = figures.committed_millicents_per_hour + rate_millicents_per_hour
    needed = _ceil_div(rate * min_runway_seconds, SECONDS_PER_HOUR)
    live = figures.live_balance_millicents
    if live >= needed and live > 0:
        return
    shortfall_cents = max(_ceil_div(needed - live, MILLICENTS_PER_CENT), 1)
    raise InsufficientCredit(
        f"Your credit does not cover {min_runway_seconds // 60} minutes at the new burn rate; "
        f"add at least {shortfall_cents} cents.",
        extensions={
            "shortfall_cents": shortfall_cents,
            "live_balance_millicents": live,
            "burn_rate_millicents_per_hour": rate,
        },
    )


# The credit cap --------------------------------------------------------------------------------

# Accounts whose live balance is down to the margin of their burn rate, or not above zero while
# an instance still provisions: their pay-as-you-go instances are to stop.
_AT_CAP = text(
    f"SELECT live.user_id FROM ({_LIVE.format(where='')}) live"
    " LEFT JOIN credit_accounts a ON a.user_id = live.user_id"
    " WHERE COALESCE(a.balance_millicents, 0) - live.unsettled"
    " <= (live.burn * :margin_seconds + 3599) / 3600"
    " ORDER BY live.user_id LIMIT :limit"
).bindparams(_NOW)


async def accounts_at_cap(
    db: AsyncSession, *, now: datetime, margin_seconds: int, limit: int = 500
) -> list[uuid.UUID]:
    """Every account at the credit cap now (one statement over the live instances)."""
    found = await db.scalars(
        _AT_CAP, {"now": now, "margin_seconds": margin_seconds, "limit": limit}
    )
    return list(found)


# Budgets ---------------------------------------------------------------------------------------

# Each budget's spend this month as counted so far plus the usage entries posted since its
# watermark (the partial (user_id, position) index reads just those), and the new watermark.
# A budget last counted in an earlier month starts again from zero; entries of that month past
# the watermark are left out by their time.
_COUNTED = """
SELECT b.user_id,
    CASE WHEN b.month = :month THEN b.spent_millicents ELSE 0 END
        + COALESCE(fresh.amount, 0) AS spent,
    GREATEST(b.counted_through_position, COALESCE(fresh.through, 0)) AS through,
    CASE WHEN b.month = :month THEN b.alerted_percent ELSE 0 END AS alerted_percent
FROM credit_budgets b
LEFT JOIN LATERAL (
    SELECT (-SUM(e.amount_millicents) FILTER (WHERE e.created_at >= :month_start))::bigint
            AS amount,
        MAX(e.position) AS through
    FROM credit_entries e
    WHERE e.user_id = b.user_id AND e.kind = 'usage' AND e.position > b.counted_through_position
) fresh ON true
{where}
"""
_MONTH = bindparam("month", type_=Date)
_MONTH_START = bindparam("month_start", type_=DateTime(timezone=True))

# One account's spend this month, to the second: for admission and the API.
_ACCOUNT_SPEND = text(
    "SELECT b.monthly_limit_cents, b.stop_running, counted.spent + COALESCE(live.unsettled, 0)"
    " AS spent"
    f" FROM ({_COUNTED.format(where='WHERE b.user_id = :user_id')}) counted"
    " JOIN credit_budgets b ON b.user_id = counted.user_id"
    f" LEFT JOIN ({_LIVE.format(where='AND i.user_id = :user_id')}) live ON true"
).bindparams(bindparam("user_id", type_=Uuid), _MONTH, _MONTH_START, _NOW)

# Every budget's running sum brought up to date, where anything was posted since or the month
# turned (the rest are as they were).
_RECOUNT = text(
    f"""
WITH counted AS ({_COUNTED.format(where="")})
UPDATE credit_budgets b
SET month = :month, spent_millicents = counted.spent,
    counted_through_position = counted.through, alerted_percent = counted.alerted_percent,
    updated_at = :now
FROM counted
WHERE b.user_id = counted.user_id
    AND (b.month <> :month OR counted.through > b.counted_through_position)
"""
).bindparams(_MONTH, _MONTH_START, _NOW)

# Budgets with something to do, locked: a threshold crossed that no alert has told, or the limit
# reached with `stop_running` and instances live.
_DUE = text(
    f"""
SELECT b.user_id, b.monthly_limit_cents, b.stop_running, b.alerted_percent,
    b.spent_millicents + COALESCE(live.unsettled, 0) AS spent,
    live.user_id IS NOT NULL AS live
FROM credit_budgets b
LEFT JOIN ({_LIVE.format(where="")}) live ON live.user_id = b.user_id
WHERE (b.spent_millicents + COALESCE(live.unsettled, 0)) * 100
        >= b.monthly_limit_cents * {MILLICENTS_PER_CENT} * :first_alert
    AND (b.alerted_percent < 100 OR (b.stop_running AND live.user_id IS NOT NULL))
ORDER BY b.user_id
LIMIT :limit
FOR UPDATE OF b
"""
).bindparams(_NOW)

BUDGET_ALERT_PERCENTS = (80, 100)


def month_of(now: datetime) -> tuple[date, datetime]:
    """The UTC calendar month `now` falls in: its first day, and the moment it began."""
    first = now.astimezone(UTC).date().replace(day=1)
    return first, datetime(first.year, first.month, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BudgetSpend:
    """An account's budget and what it has spent on usage this month, to the millicent."""

    monthly_limit_cents: int
    stop_running: bool
    spent_millicents: int

    @property
    def limit_millicents(self) -> int:
        return self.monthly_limit_cents * MILLICENTS_PER_CENT

    @property
    def exceeded(self) -> bool:
        return self.spent_millicents >= self.limit_millicents

    def reached_percent(self) -> int:
        """The highest alert threshold the spend has reached (0: none)."""
        return max(
            (
                p
                for p in BUDGET_ALERT_PERCENTS
                if self.spent_millicents * 100 >= self.limit_millicents * p
            ),
            default=0,
        )


async def budget_spend(
    db: AsyncSession | AsyncConnection, user_id: uuid.UUID, *, now: datetime
) -> BudgetSpend | None:
    """The account's budget and its spend this month; None without a budget."""
    month, month_start = month_of(now)
    row = (
        await db.execute(
            _ACCOUNT_SPEND,
            {"user_id": user_id, "month": month, "month_start": month_start, "now": now},
        )
    ).one_or_none()
    if row is None:
        return None
    return BudgetSpend(row.monthly_limit_cents, row.stop_running, row.spent)


@dataclass(frozen=True, slots=True)
class DueBudget:
    user_id: uuid.UUID
    spend: BudgetSpend
    alerted_percent: int  # the highest alert already sent this month
    live: bool  # has instances running or provisioning


async def budgets_due(db: AsyncSession, *, now: datetime, limit: int = 500) -> list[DueBudget]:
    """Bring every budget's running sum up to date, then the budgets with an alert to send or
    instances to stop, locked to the end of the caller's transaction."""
    month, month_start = month_of(now)
    await db.execute(_RECOUNT, {"month": month, "month_start": month_start, "now": now})
    rows = await db.execute(
        _DUE, {"now": now, "first_alert": BUDGET_ALERT_PERCENTS[0], "limit": limit}
    )
    return [
        DueBudget(
            row.user_id,
            BudgetSpend(row.monthly_limit_cents, row.stop_running, row.spent),
            row.alerted_percent,
            row.live,
        )
        for row in rows
    ]
