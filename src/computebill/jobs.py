"""What jobs receive and how work asks for them, free of the queue library so domains can use it.

A job asked for inside a transaction is sent only after that transaction commits, and dropped if
it rolls back (docs/architecture.md §5.3): `request_job` notes it on the session,
`db.unit_of_work` sends it.
Sending is a nudge, not the record; sweeps find committed work that no job finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.clock import Clock
from computebill.config import Settings
from computebill.tracing import current_trace_context

if TYPE_CHECKING:
    # Named for the type checker only: the queue's plumbing (imported by `db`) stays below the
    # domains, which build these at the worker's startup (docs/architecture.md §3).
    from computebill.instances.provider import ComputeProvider
    from computebill.payments.gateway import StripeGateway

JobArgument = str | int | None
PENDING_JOBS = "computebill.pending_jobs"
# The keyword argument that carries a job's trace context (W3C `traceparent`, …) when tracing is
# on; the worker takes it off before calling the job, so no job function declares it, and a job
# queued without it runs the same.
TRACE_CONTEXT = "trace_context"


class JobName(StrEnum):
    """Every job the queue runs, by the name it travels under. The worker's registry
    (`computebill.worker.registry`) maps each one to its function, options and schedule."""

    PROCESS_STRIPE_EVENT = "process_stripe_event"
    SEND_ORDER_RECEIPT = "send_order_receipt"
    PROVISION_ORDER = "provision_order"
    LAUNCH_INSTANCE = "launch_instance"
    POLL_INSTANCE = "poll_instance"
    EXPIRE_INSTANCE = "expire_instance"
    STOP_INSTANCE = "stop_instance"
    SUSPEND_INSTANCE = "suspend_instance"
    ENFORCE_CREDIT_CAP = "enforce_credit_cap"
    SEND_CREDIT_STOP_EMAIL = "send_credit_stop_email"
    ENFORCE_BUDGETS = "enforce_budgets"  # asked for by each settlement pass
    SEND_INVOICE_EMAIL = "send_invoice_email"
    SAVE_PAYMENT_METHOD = "save_payment_method"
    SAVE_SETUP_CARD = "save_setup_card"
    SEND_AUTO_RECHARGE_EMAIL = "send_auto_recharge_email"
    DELIVER_EMAIL = "deliver_email"  # one try of an e-mail over SMTP
    # Periodic: the schedule asks for these.
    RECORD_WORKER_HEARTBEAT = "record_worker_heartbeat"
    RECORD_METRICS_SNAPSHOT = "record_metrics_snapshot"
    SWEEP_INSTANCES = "sweep_instances"
    SWEEP_UNPROCESSED_EVENTS = "sweep_unprocessed_events"
    RECONCILE_PENDING_ORDERS = "reconcile_pending_orders"
    VERIFY_CREDIT_LEDGER = "verify_credit_ledger"
    SETTLE_USAGE = "settle_usage"
    SWEEP_CREDIT_CAPS = "sweep_credit_caps"
    EXPIRE_CREDIT_GRANTS = "expire_credit_grants"
    SEND_RUNWAY_ALERTS = "send_runway_alerts"
    SEND_EXPIRY_WARNINGS = "send_expiry_warnings"
    ISSUE_MONTHLY_STATEMENTS = "issue_monthly_statements"
    CHECK_AUTO_RECHARGE = "check_auto_recharge"
    SWEEP_QUEUED_EMAILS = "sweep_queued_emails"


@dataclass(frozen=True, slots=True)
class JobRequest:
    name: JobName
    args: tuple[JobArgument, ...]
    at: datetime | None = None  # run no earlier than this; None: now
    # The asking span's, when tracing is on: where the request came from, not what it asks.
    trace_context: Mapping[str, str] | None = field(default=None, compare=False)


class JobPublisher(Protocol):
    async def publish(self, requests: list[JobRequest]) -> None: ...

    async def queued(self) -> int:
        """Jobs waiting to be taken (scheduled ones not counted)."""
        ...


def request_job(
    db: AsyncSession, name: JobName, *args: JobArgument, at: datetime | None = None
) -> None:
    """Ask for a job to run once the current transaction has committed (and not before `at`)."""
    db.info.setdefault(PENDING_JOBS, []).append(JobRequest(name, args, at, current_trace_context()))


def take_requested_jobs(db: AsyncSession) -> list[JobRequest]:
    requests: list[JobRequest] = db.info.pop(PENDING_JOBS, [])
    return requests


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int  # 1 for the first try
    max_tries: int

    @property
    def is_last(self) -> bool:
        return self.number >= self.max_tries


# Set by the queue for the duration of each run, so a job can tell its last try.
current_attempt: ContextVar[Attempt] = ContextVar(
    "current_attempt",
    default=Attempt(1, 1),  # noqa: B039 - frozen, so sharing it is safe
)


@dataclass(frozen=True, slots=True)
class JobContext:
    """What every job receives: built once per worker process, at its startup."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    publisher: JobPublisher
    worker_id: str
    clock: Clock
    gateway: StripeGateway
    provider: ComputeProvider
