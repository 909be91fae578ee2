"""The caller's money: right now (`GET /api/v1/credits`) and what their instances charged in a
period (`GET /api/v1/usage`) (docs/architecture.md §8)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from pydantic import BeforeValidator

from computebill.auth.dependencies import BillingWriteAccess, ReadAccess
from computebill.billing import service
from computebill.billing.schemas import (
    BudgetIn,
    BudgetOut,
    CreditsOut,
    UsageOut,
    budget_out,
    credits_out,
    usage_csv,
    usage_filename,
    usage_out,
)
from computebill.deps import ClockDep, ReadConnectionDep, SessionDep

router = APIRouter(prefix="/api/v1")


ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _written_as_a_date(value: object) -> object:
    """Pydantic would read a number as seconds since 1970: a time here is written as ISO-8601."""
    if isinstance(value, str) and not ISO_DATE.match(value):
        raise ValueError("expected an ISO-8601 time, e.g. 2026-12-01T00:00:00Z")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_written_as_a_date)]
CSV = "text/csv"


@router.get("/credits", response_model=CreditsOut, tags=["credits"])
async def get_credits(principal: ReadAccess, db: ReadConnectionDep, clock: ClockDep) -> CreditsOut:
    """The live balance (the ledger's less what running instances have used since their last
    settlement), the burn rate, the runway and the grants left: read again, it has moved."""
    summary = await service.credit_summary(db, principal.user_id, now=clock.now())
    return credits_out(summary)


@router.get(
    "/usage",
    response_model=UsageOut,
    tags=["credits"],
    responses={200: {"content": {CSV: {"schema": {"type": "string"}}}}},
)
async def get_usage(
    principal: ReadAccess,
    db: ReadConnectionDep,
    clock: ClockDep,
    start: Annotated[
        IsoTime | None,
        Query(alias="from", description="ISO-8601 with a timezone; default: `to` less 30 days"),
    ] = None,
    end: Annotated[
        IsoTime | None,
        Query(alias="to", description="ISO-8601 with a timezone, excluded; default: now"),
    ] = None,
    group_by: service.UsageGrouping = service.UsageGrouping.INSTANCE,
    answer_format: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response | UsageOut:
    """What the caller's pay-as-you-go instances were charged in [from, to) (by the ledger's
    usage entries' times), per instance or per UTC day, with the total. At most 366 days.
    `format=csv` (or `Accept: text/csv`) answers the same rows as a CSV file."""
    period = service.usage_period(start, end, now=clock.now())
    report = await service.usage_report(db, principal.user_id, period=period, grouping=group_by)
    if answer_format == "csv" or (answer_format is None and accept is not None and CSV in accept):
        return Response(
            usage_csv(report),
            media_type=CSV,
            headers={"content-disposition": f"attachment; filename={usage_filename(report)}"},
        )
    return usage_out(report)


@router.get("/credits/budget", response_model=BudgetOut, tags=["credits"])
async def get_budget(principal: ReadAccess, db: ReadConnectionDep, clock: ClockDep) -> BudgetOut:
    """The caller's monthly budget and what their instances have used this month (UTC)."""
    status = await service.budget_status(db, principal.user_id, now=clock.now())
    return budget_out(status)


@router.put("/credits/budget", response_model=BudgetOut, tags=["credits"])
async def put_budget(
    body: BudgetIn, principal: BillingWriteAccess, db: SessionDep, clock: ClockDep
) -> BudgetOut:
    """Set (or with `monthly_limit_cents: null` remove) the monthly budget. E-mails go at 80 %
    and 100 %; at 100 % new pay-as-you-go launches get 402 `budget_exceeded`, and with
    `stop_running` the running ones are stopped by the next settlement pass."""
    now = clock.now()
    await service.set_budget(
        db,
        principal.user_id,
        monthly_limit_cents=body.monthly_limit_cents,
        stop_running=body.stop_running,
        now=now,
    )
    return budget_out(await service.budget_status(db, principal.user_id, now=now))
