"""Billing: what a customer's money looks like right now, from the credit ledger and the
metering of their running instances together (docs/architecture.md §4, pay as you go)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from sqlalchemy import BigInteger, Date, bindparam, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from computebill.credits.models import CreditEntry, EntryKind
from computebill.credits.service import Grant, active_grants
from computebill.errors import AppError
from computebill.instances.metering import LiveFigures, live_figures
from computebill.instances.models import Instance


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
    end = (end or now).astimezone(UTC)
    start = (start or end - DEFAULT_USAGE_PERIOD).astimezone(UTC)
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
