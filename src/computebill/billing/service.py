"""Billing: what a customer's money looks like right now and what their instances were charged,
from the credit ledger and the metering of their running instances together, and the e-mails
that warn of credit running out (docs/architecture.md §4, pay as you go)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Integer,
    bindparam,
    case,
    cast,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import Uuid

from computebill.auth.models import User
from computebill.config import MailBackend
from computebill.credits.models import CreditBudget, CreditEntry, EntryKind
from computebill.credits.service import Grant, active_grants
from computebill.errors import AppError
from computebill.instances import metering
from computebill.instances.metering import LiveFigures, live_figures
from computebill.instances.models import Instance
from computebill.instances.service import BUDGET_REASON, CREDIT_CAP_REASON, stop_pay_as_you_go
from computebill.mail.service import send_email
from computebill.money import MILLICENTS_PER_CENT, cents_rounded_down, format_money, round_half_up
from computebill.payments import recharge


@dataclass(frozen=True, slots=True)
class AutoRechargeShown:
    """The account's auto-recharge rule, as the runway is told with it."""

    enabled: bool
    threshold_cents: int
    amount_cents: int
    paused_reason: str | None

    @property
    def active(self) -> bool:
        """It will charge when the balance falls below the threshold."""
        return self.enabled and self.paused_reason is None


@dataclass(frozen=True, slots=True)
class CreditSummary:
    figures: LiveFigures
    grants: list[Grant]  # those that can still be spent, in the order they will be
    auto_recharge: AutoRechargeShown | None  # None: never set


async def credit_summary(
    db: AsyncConnection, user_id: uuid.UUID, *, now: datetime
) -> CreditSummary:
    """The live balance, burn rate, runway, grants and auto-recharge rule of an account (three
    statements)."""
    figures = await live_figures(db, user_id, now=now)
    rule = await recharge.rule_of(db, user_id)
    return CreditSummary(
        figures=figures,
        grants=await active_grants(db, user_id, now=now),
        auto_recharge=AutoRechargeShown(
            enabled=rule.enabled,
            threshold_cents=rule.threshold_cents,
            amount_cents=rule.amount_cents,
            paused_reason=rule.paused_reason,
        )
        if rule is not None
        else None,
    )


# Usage: what pay-as-you-go instances charged in a period (docs/architecture.md §8) ------------

MAX_USAGE_PERIOD = timedelta(days=366)
DEFAULT_USAGE_PERIOD = timedelta(days=30)


class UsageGrouping(StrEnum):
    INSTANCE = "instance"
    DAY = "day"


class InvalidUsagePeriod(AppError):
    status = 422


class UsageTimeWithoutTimezone(InvalidUsagePeriod):
    code = "usage_time_without_timezone"


class UsageTimeOutOfRange(InvalidUsagePeriod):
    code = "usage_time_out_of_range"


class UsagePeriodEmpty(InvalidUsagePeriod):
    code = "usage_period_empty"


class UsagePeriodTooLong(InvalidUsagePeriod):
    code = "usage_period_too_long"


@dataclass(frozen=True, slots=True)
class UsagePeriod:
    start: datetime  # included
    end: datetime  # excluded


def usage_period(start: datetime | None, end: datetime | None, *, now: datetime) -> UsagePeriod:
    """[start, end) in UTC: by default the 30 days up to now (or up to `end`). Refuses (422) a
    time without a timezone, an empty or reversed period, and one longer than 366 days."""
    for name, moment in (("from", start), ("to", end)):
        if moment is not None and moment.utcoffset() is None:
            raise UsageTimeWithoutTimezone(
                f"`{name}` needs a timezone, e.g. 2026-12-01T00:00:00Z.",
                errors=[{"field": name, "message": "needs a timezone", "type": "timezone"}],
            )
    try:
        end = (end or now).astimezone(UTC)
        start = (start or end - DEFAULT_USAGE_PERIOD).astimezone(UTC)
    except OverflowError:  # beyond year 1 or 9999 once in UTC, or 30 days before year 1
        raise UsageTimeOutOfRange("`from` and `to` must lie within years 1 to 9999.") from None
    if start >= end:
        raise UsagePeriodEmpty("`from` must be before `to`.")
    if end - start > MAX_USAGE_PERIOD:
        raise UsagePeriodTooLong(f"A period is at most {MAX_USAGE_PERIOD.days} days long.")
    return UsagePeriod(start=start, end=end)


class InstanceUsage(NamedTuple):
    """What one instance was charged in the period (the instance's columns None for a usage
    entry of no instance)."""

    instance_id: uuid.UUID | None
    name: str | None
    gpu_name: str | None
    gpu_count: int | None
    rate_millicents_per_hour: int | None
    entries: int
    charged_millicents: int  # positive: the entries' amounts are negative


class DayUsage(NamedTuple):
    day: date  # in UTC
    entries: int
    charged_millicents: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    period: UsagePeriod
    grouping: UsageGrouping
    rows: list[InstanceUsage] | list[DayUsage]

    @property
    def total_millicents(self) -> int:
        return sum(row.charged_millicents for row in self.rows)

    @property
    def entries(self) -> int:
        return sum(row.entries for row in self.rows)


_entries = CreditEntry.__table__.c
_instances = Instance.__table__.c
_IN_PERIOD = (
    _entries.user_id == bindparam("user_id"),
    _entries.kind == EntryKind.USAGE.value,
    _entries.created_at >= bindparam("start"),
    _entries.created_at < bindparam("end"),
)
_COUNT = func.count().label("entries")
_CHARGED = cast(-func.sum(_entries.amount_millicents), BigInteger).label("charged_millicents")
_BY_INSTANCE = (
    select(
        _entries.instance_id,
        _instances.name,
        _instances.gpu_name,
        _instances.gpu_count,
        _instances.rate_millicents_per_hour,
        _COUNT,
        _CHARGED,
    )
    .select_from(
        CreditEntry.__table__.outerjoin(Instance.__table__, _instances.id == _entries.instance_id)
    )
    .where(*_IN_PERIOD)
    .group_by(_entries.instance_id, _instances.id)
    .order_by(_CHARGED.desc(), _entries.instance_id)
)
_DAY = cast(func.timezone("UTC", _entries.created_at), Date).label("day")
_BY_DAY = select(_DAY, _COUNT, _CHARGED).where(*_IN_PERIOD).group_by(_DAY).order_by(_DAY)


async def usage_report(
    db: AsyncConnection, user_id: uuid.UUID, *, period: UsagePeriod, grouping: UsageGrouping
) -> UsageReport:
    """The account's `usage` entries created in the period, summed per instance or per UTC day
    (one statement); the total is the rows' sum, so they always add up."""
    params = {"user_id": user_id, "start": period.start, "end": period.end}
    if grouping is UsageGrouping.INSTANCE:
        by_instance = await db.execute(_BY_INSTANCE, params)
        return UsageReport(period, grouping, [InstanceUsage(*row) for row in by_instance])
    by_day = await db.execute(_BY_DAY, params)
    return UsageReport(period, grouping, [DayUsage(*row) for row in by_day])


# E-mails about credit running out (docs/architecture.md §4, runway alerts) ---------------------


def billing_link(public_base_url: str) -> str:
    return f"{public_base_url.rstrip('/')}/billing"


def _duration(seconds: int) -> str:
    """`90061` → `25 h 1 min`; under a minute, `less than a minute`."""
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours == 0 and minutes == 0:
        return "less than a minute"
    return " ".join(
        part
        for part in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "")
        if part
    )


def _balance(figures: LiveFigures) -> str:
    return format_money(cents_rounded_down(figures.live_balance_millicents))


_PAIRS = (bindparam("user_ids", type_=ARRAY(Uuid)), bindparam("thresholds", type_=ARRAY(Integer)))
_NOW = bindparam("now", type_=DateTime(timezone=True))

# Alerts of runways seen above their threshold are armed again, unless a check that read the
# runway later (a later `now`) has sent them since.
_REARM = text(
    "UPDATE credit_runway_alerts a SET armed = true, changed_at = :now"
    " FROM unnest(CAST(:user_ids AS uuid[]), CAST(:thresholds AS integer[])) AS seen(u, t)"
    " WHERE a.user_id = seen.u AND a.threshold_seconds = seen.t AND NOT a.armed"
    " AND a.changed_at < :now"
).bindparams(*_PAIRS, _NOW)

# Alerts of runways seen below their threshold are disarmed and counted, if armed (or new): the
# rows returned are the alerts to send. Two checks at once wait for each other's row, and the
# second finds it disarmed; the pairs come sorted, so both lock in one order.
_DISARM = text(
    "INSERT INTO credit_runway_alerts (user_id, threshold_seconds, armed, alerts_sent, changed_at)"
    " SELECT seen.u, seen.t, false, 1, :now"
    " FROM unnest(CAST(:user_ids AS uuid[]), CAST(:thresholds AS integer[])) AS seen(u, t)"
    " ORDER BY seen.u, seen.t"
    " ON CONFLICT (user_id, threshold_seconds) DO UPDATE"
    " SET armed = false, alerts_sent = credit_runway_alerts.alerts_sent + 1, changed_at = :now"
    " WHERE credit_runway_alerts.armed"
    " RETURNING user_id, threshold_seconds, alerts_sent"
).bindparams(*_PAIRS, _NOW)


def _pairs(pairs: list[tuple[uuid.UUID, int]]) -> dict[str, list[Any]]:
    pairs = sorted(pairs)
    return {"user_ids": [u for u, _ in pairs], "thresholds": [t for _, t in pairs]}


async def _recipients(db: AsyncSession, user_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The e-mail addresses of these users, but of those who deleted their account."""
    found = await db.execute(
        select(User.id, User.email).where(User.id.in_(list(user_ids)), User.deleted_at.is_(None))
    )
    return {row.id: row.email for row in found}


def _runway_email(figures: LiveFigures, threshold_seconds: int, link: str) -> tuple[str, str]:
    runway = figures.runway_seconds or 0
    burn = format_money(round_half_up(figures.burn_millicents_per_hour, MILLICENTS_PER_CENT))
    subject = f"Your compute credit runs out in less than {_duration(threshold_seconds)}"
    body = "\n".join(
        [
            f"Your credit balance is {_balance(figures)}. At the rate your pay-as-you-go instances"
            f" burn it, {burn} an hour, it lasts {_duration(runway)} more"
            f" (until {figures.at + timedelta(seconds=runway):%Y-%m-%d %H:%M} UTC).",
            "When it runs out, they are stopped.",
            "",
            f"Add credit: {link}",
        ]
    )
    return subject, body


async def send_runway_alerts(
    db: AsyncSession,
    *,
    thresholds_seconds: Sequence[int],
    backend: MailBackend,
    public_base_url: str,
    now: datetime,
) -> int:
    """E-mail every account whose runway has dropped below a threshold since its alert of it
    was armed, and re-arm the alerts of runways back above theirs (four statements, and one per
    e-mail). One e-mail per account and check, of the lowest threshold crossed: a runway that
    falls past two at once disarms both. Returns how many e-mails were sent."""
    if not thresholds_seconds:
        return 0
    burning = await metering.burning_accounts(db, now=now)
    below: list[tuple[uuid.UUID, int]] = []
    above: list[tuple[uuid.UUID, int]] = []
    for user_id, figures in burning.items():
        runway = figures.runway_seconds
        assert runway is not None  # they burn
        for threshold in thresholds_seconds:
            (below if runway < threshold else above).append((user_id, threshold))
    if above:
        await db.execute(_REARM, {**_pairs(above), "now": now})
    if not below:
        return 0
    crossed: dict[uuid.UUID, tuple[int, int]] = {}  # user: (lowest threshold, alerts sent)
    for row in await db.execute(_DISARM, {**_pairs(below), "now": now}):
        if row.user_id not in crossed or row.threshold_seconds < crossed[row.user_id][0]:
            crossed[row.user_id] = (row.threshold_seconds, row.alerts_sent)
    recipients = await _recipients(db, crossed)
    link = billing_link(public_base_url)
    sent = 0
    for user_id, (threshold, alerts_sent) in sorted(crossed.items()):
        if user_id not in recipients:
            continue
        subject, body = _runway_email(burning[user_id], threshold, link)
        sent += await send_email(
            db,
            backend=backend,
            dedupe_key=f"runway:{user_id}:{threshold}:{alerts_sent}",
            recipient=recipients[user_id],
            subject=subject,
            body=body,
            now=now,
        )
    return sent


def credit_stop_key(user_id: uuid.UUID, instance_ids: Iterable[uuid.UUID]) -> str:
    """The stop e-mail's key: the same instances stopped again are the same e-mail."""
    digest = hashlib.sha256(",".join(sorted(str(i) for i in instance_ids)).encode()).hexdigest()
    return f"credit_stop:{user_id}:{digest[:32]}"


async def send_credit_stop_email(
    db: AsyncSession,
    user_id: uuid.UUID,
    instance_ids: list[uuid.UUID],
    *,
    backend: MailBackend,
    public_base_url: str,
    now: datetime,
) -> bool:
    """Tell the account which of its instances the credit cap stopped, and its balance now;
    once per set of instances. False when sent before (or there is no one to send it to)."""
    stopped = list(
        await db.execute(
            select(Instance.name, Instance.gpu_name, Instance.gpu_count, Instance.region)
            .where(Instance.user_id == user_id, Instance.id.in_(instance_ids))
            .order_by(Instance.name)
        )
    )
    recipient = (await _recipients(db, [user_id])).get(user_id)
    if not stopped or recipient is None:
        return False
    figures = await live_figures(db, user_id, now=now)
    count = "An instance was" if len(stopped) == 1 else f"{len(stopped)} instances were"
    body = "\n".join(
        [
            "Your credit ran out, so these pay-as-you-go instances were stopped:",
            *(f"  {i.name} ({i.gpu_count} × {i.gpu_name}, {i.region})" for i in stopped),
            "",
            f"Your credit balance is {_balance(figures)}.",
            f"Add credit to launch instances again: {billing_link(public_base_url)}",
        ]
    )
    return await send_email(
        db,
        backend=backend,
        dedupe_key=credit_stop_key(user_id, instance_ids),
        recipient=recipient,
        subject=f"{count} stopped: your compute credit ran out",
        body=body,
        now=now,
    )


# Budgets: a monthly spend limit on usage (docs/architecture.md §4, budgets) --------------------


class BudgetLimitOutOfRange(AppError):
    status = 422
    code = "budget_limit_out_of_range"


MAX_BUDGET_CENTS = 100_000_000  # $1,000,000 a month


async def set_budget(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    monthly_limit_cents: int | None,
    stop_running: bool,
    now: datetime,
) -> None:
    """Set the account's monthly budget, or remove it (None). A changed limit is judged afresh:
    its alerts are sent again as the spend reaches them (their e-mails are keyed by the limit)."""
    if monthly_limit_cents is None:
        await db.execute(delete(CreditBudget).where(CreditBudget.user_id == user_id))
        return
    if not 1 <= monthly_limit_cents <= MAX_BUDGET_CENTS:
        raise BudgetLimitOutOfRange(
            f"monthly_limit_cents must be between 1 and {MAX_BUDGET_CENTS}.",
            extensions={"min_cents": 1, "max_cents": MAX_BUDGET_CENTS},
        )
    month, _ = metering.month_of(now)
    # A new budget counts the month from the start of the ledger (position 0): its first check
    # reads the account's usage entries once, after which only new ones.
    await db.execute(
        insert(CreditBudget)
        .values(
            user_id=user_id,
            monthly_limit_cents=monthly_limit_cents,
            stop_running=stop_running,
            month=month,
            spent_millicents=0,
            counted_through_position=0,
            alerted_percent=0,
        )
        .on_conflict_do_update(
            index_elements=[CreditBudget.user_id],
            set_={
                "monthly_limit_cents": monthly_limit_cents,
                "stop_running": stop_running,
                "alerted_percent": case(
                    (
                        CreditBudget.monthly_limit_cents == monthly_limit_cents,
                        CreditBudget.alerted_percent,
                    ),
                    else_=0,
                ),
                "updated_at": now,
            },
        )
    )


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """An account's budget (None: it has none) and its usage this month so far."""

    month: date
    budget: metering.BudgetSpend | None
    spent_millicents: int


async def budget_status(
    db: AsyncSession | AsyncConnection, user_id: uuid.UUID, *, now: datetime
) -> BudgetStatus:
    month, month_start = metering.month_of(now)
    budget = await metering.budget_spend(db, user_id, now=now)
    if budget is not None:
        return BudgetStatus(month, budget, budget.spent_millicents)
    settled = await db.scalar(
        select(func.coalesce(-func.sum(CreditEntry.amount_millicents), 0)).where(
            CreditEntry.user_id == user_id,
            CreditEntry.kind == EntryKind.USAGE,
            CreditEntry.created_at >= month_start,
        )
    )
    figures = await live_figures(db, user_id, now=now)
    return BudgetStatus(month, None, int(settled or 0) + figures.unsettled_millicents)


def _budget_email(
    spend: metering.BudgetSpend, percent: int, stopped: int, link: str, month: date
) -> tuple[str, str]:
    limit = format_money(spend.monthly_limit_cents)
    spent = format_money(round_half_up(spend.spent_millicents, MILLICENTS_PER_CENT))
    if percent >= 100:
        subject = f"You have reached your monthly budget of {limit}"
        consequence = (
            f"Your running pay-as-you-go instances were stopped ({stopped})."
            if stopped
            else "Running instances keep running; new pay-as-you-go launches are refused"
            " until the month ends or you raise the budget."
        )
    else:
        subject = f"You have used {percent} % of your monthly budget of {limit}"
        consequence = "At 100 %, new pay-as-you-go launches are refused."
    body = "\n".join(
        [
            f"Your instances' usage in {month:%B %Y} is {spent}, {percent} % or more of your"
            f" budget of {limit}.",
            consequence,
            "",
            f"Change the budget: {link}",
        ]
    )
    return subject, body


async def enforce_budgets(
    db: AsyncSession, *, backend: MailBackend, public_base_url: str, now: datetime
) -> int:
    """After a settlement pass: count the month's new usage into every budget, e-mail each
    account whose spend reached 80 % or 100 % of its budget (once each per month and limit), and
    stop the instances of those at 100 % that asked for it. Returns how many e-mails were sent."""
    due = await metering.budgets_due(db, now=now)
    if not due:
        return 0
    recipients = await _recipients(db, (b.user_id for b in due))
    to_stop = [b.user_id for b in due if b.spend.exceeded and b.spend.stop_running and b.live]
    stopped = await stop_pay_as_you_go(db, to_stop, reason=BUDGET_REASON, now=now)
    month, _ = metering.month_of(now)
    link = billing_link(public_base_url)
    sent = 0
    for budget in due:
        percent = budget.spend.reached_percent()
        if percent <= budget.alerted_percent:
            continue
        await db.execute(
            update(CreditBudget)
            .where(CreditBudget.user_id == budget.user_id)
            .values(alerted_percent=percent, updated_at=now)
        )
        if budget.user_id not in recipients:
            continue
        subject, body = _budget_email(
            budget.spend, percent, len(stopped.get(budget.user_id, [])), link, month
        )
        sent += await send_email(
            db,
            backend=backend,
            dedupe_key=(
                f"budget:{budget.user_id}:{month:%Y-%m}:{budget.spend.monthly_limit_cents}:{percent}"
            ),
            recipient=recipients[budget.user_id],
            subject=subject,
            body=body,
            now=now,
        )
    return sent


# Daily spend: usage summed per UTC day -----------------------------------------------------------

SPEND_DAYS = 30  # the billing page's chart

_ONE_DAY = timedelta(days=1)


class DaySpend(NamedTuple):
    day: date  # a UTC day
    millicents: int  # the usage charged that day (positive)


async def daily_usage(
    db: AsyncConnection, user_id: uuid.UUID, *, now: datetime, days: int = SPEND_DAYS
) -> list[DaySpend]:
    """What usage entries charged on each of the last `days` UTC days, today included, oldest
    first; a day without usage is zero (the usage report per day: one statement). The days add
    up exactly to the usage entries of the window."""
    until = datetime.combine(now.astimezone(UTC).date() + _ONE_DAY, time(), tzinfo=UTC)
    since = until - days * _ONE_DAY
    report = await usage_report(
        db, user_id, period=UsagePeriod(since, until), grouping=UsageGrouping.DAY
    )
    spent = {row.day: row.charged_millicents for row in report.rows if isinstance(row, DayUsage)}
    return [
        DaySpend(day, spent.get(day, 0))
        for day in ((since + n * _ONE_DAY).date() for n in range(days))
    ]


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
