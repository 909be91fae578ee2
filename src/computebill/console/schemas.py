from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from computebill.console.service import Overview
from computebill.instances.schemas import InstanceOut
from computebill.orders.schemas import OrderSummaryOut


class ReplayQueued(BaseModel):
    event_id: str
    status: Literal["pending"]


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str | None
    role: str
    email_verified: bool
    two_factor_enabled: bool
    created_at: datetime


class CustomerList(BaseModel):
    customers: list[CustomerOut]


class OperatorSessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_agent: str
    ip_address: str
    created_at: datetime
    last_used_at: datetime


class AuthEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    type: str
    session_id: uuid.UUID | None
    ip_address: str
    user_agent: str
    created_at: datetime


class CustomerDetailOut(BaseModel):
    customer: CustomerOut
    sessions: list[OperatorSessionOut] = Field(description="Live sessions, last used first")
    orders: list[OrderSummaryOut] = Field(description="The latest orders, newest first")
    instances: list[InstanceOut] = Field(description="Every instance, newest first")
    balance_millicents: int
    auth_events: list[AuthEventOut] = Field(description="The latest authentication events")


class RevenueOut(BaseModel):
    orders_cents: int = Field(description="Orders paid in the window (by when they were paid)")
    top_ups_cents: int = Field(description="Credit top-ups paid in the window")
    refunds_cents: int = Field(
        description="Refunds of orders and of top-ups made in the window (not disputes)"
    )
    net_cents: int = Field(description="orders + top-ups - refunds")


class RevenueWindows(BaseModel):
    """Money taken through Stripe, in cents: paid orders and paid credit top-ups (each is
    invoiced when paid, so both are sales here), less the refunds of either made in the window,
    whenever the refunded payment was. Windows end now: `today` since 00:00 UTC."""

    today: RevenueOut
    last_7_days: RevenueOut
    last_30_days: RevenueOut


class CountWindows(BaseModel):
    today: int
    last_7_days: int
    last_30_days: int


class ActiveModelOut(BaseModel):
    gpu_slug: str
    gpu_name: str
    instances: int = Field(description="Provisioning or running")
    gpus: int


class ProblemOut(BaseModel):
    key: Literal[
        "failed_events",
        "orders_for_review",
        "failed_instances",
        "stuck_instances",
        "negative_balances",
    ]
    label: str
    count: int
    href: str | None = Field(
        description="The console's list of them; None: the overview lists them itself"
    )


class NegativeAccountOut(BaseModel):
    user_id: uuid.UUID
    email: str
    balance_millicents: int


class QueueDepthOut(BaseModel):
    """Jobs by state, each counted up to the 50 the queue overview reads."""

    queued: int
    running: int
    scheduled: int
    failed: int


class OverviewOut(BaseModel):
    as_of: datetime
    revenue: RevenueWindows
    gpu_hours_sold: CountWindows = Field(
        description="GPU-hours of the fixed-hours lines of orders paid in the window "
        "(GPUs × hours × quantity)"
    )
    gpu_seconds_used: CountWindows = Field(
        description="Instances' run time within the window, in whole seconds, times their GPUs"
    )
    active_instances: list[ActiveModelOut] = Field(
        description="Provisioning or running instances by GPU model, the most first"
    )
    problems: list[ProblemOut] = Field(
        description="What needs an operator: failed Stripe events, orders flagged for review, "
        "failed instances, instances provisioning or stopping for over 30 minutes, accounts "
        "with a negative balance"
    )
    oldest_pending_event_age_seconds: int | None = Field(
        description="How long the oldest unprocessed Stripe event has waited; None: none waits"
    )
    negative_balance_accounts: list[NegativeAccountOut] = Field(
        description="The 20 lowest negative balances, the lowest first"
    )
    queue: QueueDepthOut | None = Field(description="None: the job queue cannot be reached")


def overview_out(figures: Overview, queue: QueueDepthOut | None) -> OverviewOut:
    problems = figures.problems
    failed_instances, failed_events, to_review = (
        "/admin/instances?status=failed",
        "/admin/events?status=failed",
        "/admin/orders?review=1",
    )
    listed = [
        ("failed_events", "Failed Stripe events", problems.failed_events, failed_events),
        ("orders_for_review", "Orders to review", problems.orders_for_review, to_review),
        ("failed_instances", "Failed instances", problems.failed_instances, failed_instances),
        ("stuck_instances", "Stuck instances", problems.stuck_instances, failed_instances),
        ("negative_balances", "Negative balances", problems.negative_balances, None),
    ]  # fmt: skip
    return OverviewOut(
        as_of=figures.now,
        revenue=RevenueWindows.model_validate(
            {
                name: RevenueOut(
                    orders_cents=revenue.orders_cents,
                    top_ups_cents=revenue.top_ups_cents,
                    refunds_cents=revenue.refunds_cents,
                    net_cents=revenue.net_cents,
                )
                for name, revenue in figures.revenue.items()
            }
        ),
        gpu_hours_sold=CountWindows.model_validate(figures.gpu_hours_sold),
        gpu_seconds_used=CountWindows.model_validate(figures.gpu_seconds_used),
        active_instances=[ActiveModelOut.model_validate(m._asdict()) for m in figures.active],
        problems=[
            ProblemOut.model_validate({"key": key, "label": label, "count": count, "href": href})
            for key, label, count, href in listed
        ],
        oldest_pending_event_age_seconds=problems.oldest_pending_event_age_seconds,
        negative_balance_accounts=[
            NegativeAccountOut.model_validate(a._asdict()) for a in figures.negative_accounts
        ],
        queue=queue,
    )
