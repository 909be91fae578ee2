"""What the API shows of a customer's money right now."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from computebill.billing.service import (
    BudgetStatus,
    CreditSummary,
    DayUsage,
    InstanceUsage,
    UsageGrouping,
    UsageReport,
)
from computebill.money import (
    MILLICENTS_PER_CENT,
    cents_rounded_down,
    decimal_units,
    round_half_up,
)


class GrantOut(BaseModel):
    id: uuid.UUID = Field(description="The grant's ledger entry")
    amount_millicents: int
    remaining_millicents: int = Field(description="What is left, spent before paid credit")
    expires_at: datetime | None = Field(description="When what is left expires; None: never")


class AutoRechargeSummaryOut(BaseModel):
    enabled: bool = Field(description="On and not paused: the runway is with auto-recharge")
    threshold_cents: int
    amount_cents: int
    paused_reason: str | None


class CreditsOut(BaseModel):
    balance_cents: int = Field(
        description="The live balance in whole cents, rounded down (never more than there is)"
    )
    live_balance_millicents: int = Field(
        description="The ledger's balance less what running instances have used and is not"
        " settled yet: it moves every second"
    )
    settled_balance_millicents: int = Field(description="The ledger's balance: its entries' sum")
    burn_rate_cents_per_hour: int = Field(
        description="What the running pay-as-you-go instances cost an hour, to the nearest cent"
    )
    burn_rate_millicents_per_hour: int
    runway_seconds: int | None = Field(
        description="How long the live balance lasts at the burn rate; None while nothing burns"
    )
    exhausts_at: datetime | None = Field(description="When the live balance reaches zero")
    grants: list[GrantOut]
    auto_recharge: AutoRechargeSummaryOut | None = Field(
        description="The auto-recharge rule, if one is set: while it is enabled the runway is"
        " with auto-recharge (credit is bought when the balance falls below the threshold)"
    )


def credits_out(summary: CreditSummary) -> CreditsOut:
    figures = summary.figures
    return CreditsOut(
        balance_cents=cents_rounded_down(figures.live_balance_millicents),
        live_balance_millicents=figures.live_balance_millicents,
        settled_balance_millicents=figures.balance_millicents,
        burn_rate_cents_per_hour=round_half_up(
            figures.burn_millicents_per_hour, MILLICENTS_PER_CENT
        ),
        burn_rate_millicents_per_hour=figures.burn_millicents_per_hour,
        runway_seconds=figures.runway_seconds,
        exhausts_at=figures.exhausts_at,
        grants=[
            GrantOut(
                id=grant.grant_entry_id,
                amount_millicents=grant.amount_millicents,
                remaining_millicents=grant.remaining_millicents,
                expires_at=grant.expires_at,
            )
            for grant in summary.grants
        ],
        auto_recharge=AutoRechargeSummaryOut(
            enabled=shown.active,
            threshold_cents=shown.threshold_cents,
            amount_cents=shown.amount_cents,
            paused_reason=shown.paused_reason,
        )
        if (shown := summary.auto_recharge) is not None
        else None,
    )


def _cents(millicents: int) -> int:
    return round_half_up(millicents, MILLICENTS_PER_CENT)


class InstanceUsageOut(BaseModel):
    instance_id: uuid.UUID | None = Field(description="None for usage of no instance")
    name: str | None
    gpu_name: str | None
    gpu_count: int | None
    rate_millicents_per_hour: int | None
    entries: int = Field(description="How many usage entries of the ledger this row sums")
    charged_millicents: int = Field(description="What was charged, positive, exact")
    charged_cents: int = Field(description="The same to the nearest cent (halves up)")


class DayUsageOut(BaseModel):
    day: date = Field(description="A UTC day")
    entries: int
    charged_millicents: int
    charged_cents: int


class UsageOut(BaseModel):
    # `from` is a keyword in Python: the field is `from_`, written and read as `from`.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    from_: datetime = Field(alias="from", description="The period's start (included), UTC")
    to: datetime = Field(description="The period's end (excluded), UTC")
    group_by: UsageGrouping
    rows: list[InstanceUsageOut] | list[DayUsageOut] = Field(
        description="Per instance (the most charged first) or per UTC day with usage (in order)"
    )
    entries: int
    total_millicents: int = Field(
        description="What the period's usage entries charged: exactly the sum of the rows"
    )
    total_cents: int = Field(description="The total to the nearest cent (halves up)")


def usage_out(report: UsageReport) -> UsageOut:
    total = report.total_millicents
    rows: list[InstanceUsageOut] | list[DayUsageOut]
    if report.grouping is UsageGrouping.INSTANCE:
        rows = [
            InstanceUsageOut(**row._asdict(), charged_cents=_cents(row.charged_millicents))
            for row in report.rows
            if isinstance(row, InstanceUsage)
        ]
    else:
        rows = [
            DayUsageOut(**row._asdict(), charged_cents=_cents(row.charged_millicents))
            for row in report.rows
            if isinstance(row, DayUsage)
        ]
    return UsageOut.model_validate(
        {
            "from": report.period.start,
            "to": report.period.end,
            "group_by": report.grouping,
            "rows": rows,
            "entries": report.entries,
            "total_millicents": total,
            "total_cents": _cents(total),
        }
    )


_INSTANCE_COLUMNS = (
    "instance_id",
    "name",
    "gpu_name",
    "gpu_count",
    "rate_per_hour",
    "entries",
    "charged",
)
_DAY_COLUMNS = ("day", "entries", "charged")


def usage_csv(report: UsageReport) -> str:
    """The report's rows as CSV with a header line; money in exact decimal dollars."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if report.grouping is UsageGrouping.INSTANCE:
        writer.writerow(_INSTANCE_COLUMNS)
        for row in report.rows:
            assert isinstance(row, InstanceUsage)
            rate = row.rate_millicents_per_hour
            writer.writerow(
                (
                    row.instance_id or "",
                    row.name or "",
                    row.gpu_name or "",
                    "" if row.gpu_count is None else row.gpu_count,
                    "" if rate is None else decimal_units(rate),
                    row.entries,
                    decimal_units(row.charged_millicents),
                )
            )
    else:
        writer.writerow(_DAY_COLUMNS)
        for row in report.rows:
            assert isinstance(row, DayUsage)
            writer.writerow(
                (row.day.isoformat(), row.entries, decimal_units(row.charged_millicents))
            )
    return out.getvalue()


def usage_filename(report: UsageReport) -> str:
    period = report.period
    return f"usage-{period.start:%Y%m%dT%H%M%SZ}-{period.end:%Y%m%dT%H%M%SZ}.csv"


class BudgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    monthly_limit_cents: StrictInt | None = Field(
        description="The most the account's instances may use in a calendar month (UTC), in"
        " cents; null removes the budget"
    )
    stop_running: StrictBool = Field(
        default=False,
        description="At 100 %, also stop running pay-as-you-go instances (new launches are"
        " refused either way)",
    )


class BudgetOut(BaseModel):
    monthly_limit_cents: int | None
    stop_running: bool
    month: str = Field(description="The calendar month (UTC) counted, YYYY-MM")
    spent_millicents: int = Field(
        description="Usage this month, including what running instances have used and is not"
        " settled yet"
    )
    spent_cents: int = Field(description="spent_millicents to the nearest cent")
    percent_used: int | None = Field(description="Of the budget, rounded down; null: no budget")
    exceeded: bool = Field(description="New pay-as-you-go launches are refused (402)")


def budget_out(status: BudgetStatus) -> BudgetOut:
    budget = status.budget
    return BudgetOut(
        monthly_limit_cents=budget.monthly_limit_cents if budget else None,
        stop_running=budget.stop_running if budget else False,
        month=f"{status.month:%Y-%m}",
        spent_millicents=status.spent_millicents,
        spent_cents=_cents(status.spent_millicents),
        percent_used=(status.spent_millicents * 100 // budget.limit_millicents if budget else None),
        exceeded=budget.exceeded if budget else False,
    )
