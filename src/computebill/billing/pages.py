"""The billing page: the customer's money right now (the live balance, burn rate and runway,
ticking while instances run), the grants left, buying credit (the form posts to payments), the
ledger a page at a time, and the daily spend of the last 30 days as a chart. The same services
as `GET /api/v1/credits` and `GET /api/v1/credits/entries`."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.auth.browser import CustomerDep, Visitor, VisitorDep, verify_csrf
from computebill.billing import service
from computebill.credits.models import EntryKind
from computebill.credits.service import entries_page
from computebill.deps import ClockDep, ReadConnectionDep, SessionDep, SettingsDep
from computebill.errors import AppError
from computebill.instances.metering import LiveFigures
from computebill.instances.pages import duration
from computebill.invoices.service import invoices_page, list_statements
from computebill.money import (
    MILLICENTS_PER_CENT,
    cents_from_text,
    cents_rounded_down,
    format_money,
    round_half_up,
)
from computebill.paging import PageCursor
from computebill.payments import cards, recharge
from computebill.payments.pages import top_up_form
from computebill.web.login import LoginRequired
from computebill.web.rendering import redirect, render, render_refused_form

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

BILLING = "/billing"
LEDGER_PAGE_SIZE = 20
INVOICES_SHOWN = 10  # the latest; /billing/invoices pages through them all

# How each kind of ledger entry reads on the page.
ENTRY_KINDS = {
    EntryKind.TOP_UP: "Top-up",
    EntryKind.TOP_UP_REVERSAL: "Top-up reversed",
    EntryKind.USAGE: "Usage",
    EntryKind.UNUSED_TIME: "Unused time credited",
    EntryKind.GRANT: "Promotional credit",
    EntryKind.EXPIRY: "Promotional credit expired",
    EntryKind.ADJUSTMENT: "Adjustment",
    EntryKind.PURCHASE: "Hours bought",
}


@dataclass(frozen=True, slots=True)
class Runway:
    """How long the balance lasts, worded: `tone` is "good", "warn" (under an hour) or "bad"
    (nothing left)."""

    text: str
    tone: str


def runway(figures: LiveFigures, auto_recharge: service.AutoRechargeShown | None = None) -> Runway:
    """The runway in words; with an active auto-recharge, what it adds and when."""
    recharging = (
        f" With auto-recharge: {format_money(auto_recharge.amount_cents)} is added when it falls"
        f" below {format_money(auto_recharge.threshold_cents)}."
        if auto_recharge is not None and auto_recharge.active
        else ""
    )
    live = figures.live_balance_millicents
    if live <= 0:
        return Runway(
            "Your credit is used up: pay-as-you-go instances cannot run until you add credit."
            + recharging,
            "bad",
        )
    seconds = figures.runway_seconds
    if seconds is None:
        return Runway("Nothing is running, so nothing is being spent." + recharging, "good")
    tone = "warn" if seconds < 3600 and not recharging else "good"
    return Runway(f"Lasts {duration(seconds)} at the current rate.{recharging}", tone)


# The chart of daily spend: an inline SVG, one bar a day, drawn on the server -------------------

CHART_HEIGHT = 120  # the bars' area, in the SVG's units
BAR_WIDTH = 16
BAR_GAP = 4


@dataclass(frozen=True, slots=True)
class Bar:
    day: date
    cents: int  # the day's spend, to the nearest cent
    x: int
    y: int
    height: int


@dataclass(frozen=True, slots=True)
class SpendChart:
    bars: list[Bar]
    width: int
    height: int
    bar_width: int
    total_cents: int  # the window's spend, rounded once
    highest: Bar | None  # the most expensive day; None: nothing was spent

    @property
    def description(self) -> str:
        """The chart in words, for its aria-label."""
        days = len(self.bars)
        if self.highest is None:
            return f"Daily spend over the last {days} days: nothing was spent."
        return (
            f"Daily spend over the last {days} days: {format_money(self.total_cents)} in all;"
            f" the most, {format_money(self.highest.cents)}, on {self.highest.day.isoformat()}."
        )


def spend_chart(days: list[service.DaySpend]) -> SpendChart:
    most = max((day.millicents for day in days), default=0)
    bars = []
    for index, day in enumerate(days):
        height = day.millicents * CHART_HEIGHT // most if most else 0
        if day.millicents and not height:
            height = 1  # a day with any spend shows
        bars.append(
            Bar(
                day=day.day,
                cents=round_half_up(day.millicents, MILLICENTS_PER_CENT),
                x=index * (BAR_WIDTH + BAR_GAP),
                y=CHART_HEIGHT - height,
                height=height,
            )
        )
    highest = max(bars, key=lambda bar: bar.cents) if most else None
    total = sum(day.millicents for day in days)
    return SpendChart(
        bars=bars,
        width=len(bars) * (BAR_WIDTH + BAR_GAP) - BAR_GAP,
        height=CHART_HEIGHT,
        bar_width=BAR_WIDTH,
        total_cents=round_half_up(total, MILLICENTS_PER_CENT),
        highest=highest,
    )


# The pages -------------------------------------------------------------------------------------


async def _balance_context(
    db: AsyncConnection, visitor: Visitor, *, now: datetime
) -> tuple[dict[str, Any], Visitor]:
    """The live figures' context, and the visitor with the header showing the same balance."""
    assert visitor.principal is not None
    summary = await service.credit_summary(db, visitor.principal.user_id, now=now)
    figures = summary.figures
    balance_cents = cents_rounded_down(figures.live_balance_millicents)
    context = {
        "summary": summary,
        "balance_cents": balance_cents,
        "burning": figures.burn_millicents_per_hour > 0,
        "runway": runway(figures, summary.auto_recharge),
    }
    return context, dataclasses.replace(visitor, balance_cents=balance_cents)


@router.get(BILLING, response_class=HTMLResponse)
async def billing(
    request: Request,
    customer: CustomerDep,
    db: ReadConnectionDep,
    settings: SettingsDep,
    clock: ClockDep,
    cursor: PageCursor = None,
) -> HTMLResponse:
    now = clock.now()
    context, visitor = await _balance_context(db, customer.visitor, now=now)
    ledger = await entries_page(db, customer.user_id, cursor=cursor, limit=LEDGER_PAGE_SIZE)
    days = await service.daily_usage(db, customer.user_id, now=now)
    context |= await budget_form(db, customer.user_id, now=now)
    invoices, more_invoices = await invoices_page(
        db, customer.user_id, cursor=None, limit=INVOICES_SHOWN
    )
    context |= {
        "invoices": invoices,
        "more_invoices": more_invoices is not None,
        "statements": await list_statements(db, customer.user_id),
        "entries": ledger.entries,
        "next_cursor": ledger.next_cursor,
        "first_page": cursor is None,
        "entry_kinds": {kind.value: label for kind, label in ENTRY_KINDS.items()},
        "chart": spend_chart(days),
        "cards": await cards.list_cards(db, customer.user_id),
        "rule": await recharge.rule_of(db, customer.user_id),
        "attempts": await recharge.recent_attempts(db, customer.user_id),
        **top_up_form(settings),
    }
    return render(request, "billing.html", context, visitor=visitor)


@router.get(f"{BILLING}/balance", response_class=HTMLResponse)
async def balance(
    request: Request, visitor: VisitorDep, db: ReadConnectionDep, clock: ClockDep
) -> HTMLResponse:
    """The live figures alone (and the header's balance, out of band), which the billing page
    polls every 5 s while something burns."""
    if visitor.principal is None:
        raise LoginRequired(BILLING)  # back to the whole page, not to this fragment
    context, shown = await _balance_context(db, visitor, now=clock.now())
    return render(request, "_billing_balance.html", {**context, "oob_balance": True}, visitor=shown)


# The budget: a monthly spend limit on usage (docs/architecture.md §4, budgets) -----------------


async def budget_form(
    db: AsyncConnection | AsyncSession,
    user_id: uuid.UUID,
    *,
    now: datetime,
    typed: str | None = None,
    stop_running: bool | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The context of the budget form (`_budget.html`): the budget and this month's usage, and
    what was typed with its error when a change was refused."""
    status = await service.budget_status(db, user_id, now=now)
    budget = status.budget
    return {
        "budget": budget,
        "budget_month": status.month,
        "budget_spent_cents": round_half_up(status.spent_millicents, MILLICENTS_PER_CENT),
        "budget_percent": (
            min(status.spent_millicents * 100 // budget.limit_millicents, 100) if budget else 0
        ),
        "budget_typed": (
            typed
            if typed is not None
            else (
                format_money(budget.monthly_limit_cents).lstrip("$").replace(",", "")
                if budget
                else ""
            )
        ),
        "budget_stop_running": (
            stop_running if stop_running is not None else bool(budget and budget.stop_running)
        ),
        "budget_error": error,
    }


@router.post(f"{BILLING}/budget")
async def set_budget(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    clock: ClockDep,
    limit: Annotated[str, Form(max_length=40)] = "",
    stop_running: Annotated[bool, Form()] = False,
) -> Response:
    """The billing page's budget form, as `PUT /api/v1/credits/budget`: an empty limit removes
    the budget. A refusal comes back as the form with its error."""
    now = clock.now()
    cents = cents_from_text(limit) if limit.strip() else None
    try:
        if limit.strip() and cents is None:
            raise service.BudgetLimitOutOfRange("Enter the budget in dollars, such as 500.")
        await service.set_budget(
            db, customer.user_id, monthly_limit_cents=cents, stop_running=stop_running, now=now
        )
    except AppError as refused:
        context = await budget_form(
            db,
            customer.user_id,
            now=now,
            typed=limit,
            stop_running=stop_running,
            error=refused.detail,
        )
        return render_refused_form(
            request,
            context,
            fragment="_budget.html",
            page="budget_refused.html",
            visitor=customer.visitor,
            status_code=refused.status,
        )
    return redirect(f"{BILLING}#budget", request)
