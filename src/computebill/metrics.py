"""Prometheus metrics: HTTP requests by route template (and a pure-ASGI middleware to count
them), jobs, money and webhooks counted where they happen, and the snapshot of gauges that need
the database, which a worker job computes and every app process reads from Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "computebill_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "computebill_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
JOBS = Counter(
    "computebill_jobs_total", "Background jobs run, by job name and outcome.", ["job", "outcome"]
)
JOB_DURATION = Histogram(
    "computebill_job_duration_seconds",
    "Time a background job ran, by job name.",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0),
)


class MoneyCounters:
    """How many payments (or refunds) and how many cents, by kind (`order`, `top_up`) and
    currency: `computebill_<noun>s_total` and `computebill_<noun>_cents_total`."""

    def __init__(self, noun: str, what: str) -> None:
        labels = ["kind", "currency"]
        self.times = Counter(f"computebill_{noun}s", f"{what}, by kind and currency.", labels)
        self.cents = Counter(
            f"computebill_{noun}_cents", f"Cents of {what.lower()}, by kind and currency.", labels
        )

    def count(self, db: AsyncSession, *, kind: str, currency: str, cents: int) -> None:
        """One more, of `cents`, once the session's transaction commits."""

        def count() -> None:
            self.times.labels(kind, currency).inc()
            self.cents.labels(kind, currency).inc(cents)

        after_commit(db, count)


PAYMENTS = MoneyCounters("payment", "Payments that made an order or a credit top-up paid")
REFUNDS = MoneyCounters("refund", "Refunds recorded")
CREDIT_STOPS = Counter(
    "computebill_instances_stopped_for_credit",
    "Pay-as-you-go instances the credit cap stopped.",
)
_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
WEBHOOK_LAG = Histogram(
    "computebill_webhook_processing_lag_seconds",
    "From a Stripe event's arrival (received_at) to its processing.",
    buckets=_LAG_BUCKETS,
)
PAYMENT_TO_PAID = Histogram(
    "computebill_payment_to_paid_seconds",
    "From Stripe's event of a completed payment (its created time) to the order or top-up "
    "being paid, for payments the webhook fulfils.",
    buckets=_LAG_BUCKETS,
)
READY = Gauge(
    "computebill_ready",
    "1 when this app process's last /readyz answered 200, 0 when it answered 503 (NaN before "
    "the first).",
)
READY.set(float("nan"))  # no answer yet is not a failure

UNMATCHED_ROUTE = "<unmatched>"
_AFTER_COMMIT = "computebill.metrics.after_commit"


def after_commit(db: AsyncSession, count: Callable[[], None]) -> None:
    """Count something once the session's transaction commits; a rollback forgets it, so a
    counter never counts money that was not kept."""
    pending: list[Callable[[], None]] | None = db.info.get(_AFTER_COMMIT)
    if pending is None:
        pending = db.info[_AFTER_COMMIT] = []
        event.listen(db.sync_session, "after_commit", _run_pending)
        event.listen(db.sync_session, "after_rollback", _forget_pending)
    pending.append(count)


def _run_pending(session: Session) -> None:
    pending: list[Callable[[], None]] = session.info.get(_AFTER_COMMIT, [])
    while pending:
        pending.pop(0)()


def _forget_pending(session: Session) -> None:
    session.info.get(_AFTER_COMMIT, []).clear()


# The snapshot: gauges that need the database ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotGauge:
    name: str
    help: str
    labels: tuple[str, ...] = ()


SNAPSHOT_GAUGES = {
    gauge.name: gauge
    for gauge in (
        SnapshotGauge("computebill_stripe_events", "Stored Stripe events, by status.", ("status",)),
        SnapshotGauge(
            "computebill_stripe_event_oldest_pending_age_seconds",
            "Age of the oldest pending Stripe event (0 when none is pending).",
        ),
        SnapshotGauge("computebill_instances", "Instances, by status.", ("status",)),
        SnapshotGauge(
            "computebill_metering_lag_seconds",
            "Largest run time of a running pay-as-you-go instance not yet settled "
            "(now - started_at - billed_through_seconds; 0 when none runs).",
        ),
        SnapshotGauge(
            "computebill_metering_interval_seconds", "METERING_INTERVAL_SECONDS, for the alert."
        ),
        SnapshotGauge(
            "computebill_credit_lowest_balance_millicents",
            "The lowest credit balance of any account (0 when none is below zero).",
        ),
        SnapshotGauge(
            "computebill_credit_accounts_below_bound",
            "Accounts whose balance is below the credit cap's documented bound "
            "(docs/architecture.md, the credit cap).",
        ),
        SnapshotGauge("computebill_queue_depth", "Jobs waiting in the queue (not scheduled)."),
        SnapshotGauge(
            "computebill_snapshot_timestamp_seconds",
            "When the worker last computed these gauges (Unix time).",
        ),
    )
}

Snapshot = Mapping[tuple[str, tuple[str, ...]], float]  # (gauge, label values) → value


def snapshot_fields(snapshot: Snapshot) -> list[tuple[str, str]]:
    """The snapshot as the fields of one Redis hash: `[name, [label values]]` → value."""
    return [
        (orjson.dumps([name, list(values)]).decode(), repr(float(value)))
        for (name, values), value in snapshot.items()
    ]


def snapshot_of_fields(fields: Mapping[bytes | str, bytes | str]) -> Snapshot:
    snapshot: dict[tuple[str, tuple[str, ...]], float] = {}
    for key, value in fields.items():
        name, values = orjson.loads(key)
        if name in SNAPSHOT_GAUGES:  # a gauge a newer or older release wrote is left out
            snapshot[(str(name), tuple(map(str, values)))] = float(value)
    return snapshot


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        for gauge in SNAPSHOT_GAUGES.values():
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=gauge.labels)
            for (name, values), value in self.snapshot.items():
                if name == gauge.name and len(values) == len(gauge.labels):
                    family.add_metric(list(values), value)
            yield family


def _render_snapshot(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)


def serve_metrics(host: str, port: int) -> None:
    """Serve this process's metrics on a port of its own (the worker has no HTTP server)."""
    start_http_server(port, addr=host)


def render_metrics(snapshot: Snapshot | None = None) -> tuple[bytes, str]:
    """This process's metrics, and the snapshot's gauges when there is one."""
    body = generate_latest()
    if snapshot:
        body += _render_snapshot(snapshot)
    return body, CONTENT_TYPE_LATEST


def route_template(scope: Scope) -> str:
    # The template (`/api/v1/orders/{id}`), never the raw path, keeps label cardinality bounded.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
