"""The business metrics: a payment counted once its transaction commits, by exactly its cents;
and the worker's snapshot of the gauges that need the database, exact for a known platform (a
database of its own), served by the app's /metrics from Redis."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from computebill.auth.models import User
from computebill.config import Settings
from computebill.credits.models import CreditAccount
from computebill.db import unit_of_work
from computebill.devserver.scratch import Sessions, database
from computebill.instances.models import InstanceStatus
from computebill.jobs import take_requested_jobs
from computebill.metrics import PAYMENTS
from computebill.ops.jobs import record_metrics_snapshot
from computebill.orders.models import Order
from computebill.orders.service import record_refund
from computebill.payments import events, inbox
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import EventStatus, StripeEvent
from tests.instances.metering import add_metered
from tests.support.clock import MovableClock
from tests.support.database import own_database
from tests.support.http import in_process
from tests.support.jobs import RecordingPublisher, job_context
from tests.support.orders import add_paid_order
from tests.support.shopper import paid_checkout
from tests.support.stripe import EmulatorProcess, payment_terms, with_stripe


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _payments(kind: str) -> tuple[float, float]:
    labels = {"kind": kind, "currency": "usd"}
    return _sample("computebill_payments_total", **labels), _sample(
        "computebill_payment_cents_total", **labels
    )


@pytest.fixture(scope="module")
def quiet_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The emulator delivering no webhooks: the test hands the event over itself."""
    emulator = EmulatorProcess(Path(tmp_path_factory.mktemp("metrics"))).start()
    yield emulator
    emulator.stop()


async def test_a_paid_order_counts_once_by_exactly_its_cents(
    settings: Settings, quiet_emulator: EmulatorProcess
) -> None:
    app_settings = with_stripe(settings, api_base=quiet_emulator.base_url, webhook_secret=None)
    order_id = await paid_checkout(app_settings, quantity=2)
    listed = quiet_emulator.client().v1.events.list(params={"limit": 100})
    completed = next(e.to_dict() for e in listed.data if e.type == "checkout.session.completed")
    count, cents = _payments("order")
    lag_count = _sample("computebill_webhook_processing_lag_seconds_count")
    paid_count = _sample("computebill_payment_to_paid_seconds_count")

    gateway = StripeGateway(app_settings)
    async with database(app_settings) as sessions:
        async with unit_of_work(sessions) as db:
            await inbox.store_event(db, completed, now=datetime.now(UTC))
            take_requested_jobs(db)
        for _ in range(2):  # a repeated delivery pays nothing twice
            async with unit_of_work(sessions) as db:
                await events.process_event(
                    db, gateway, completed["id"], terms=payment_terms(), now=datetime.now(UTC)
                )
                take_requested_jobs(db)
        async with sessions() as db:
            order = await db.get(Order, order_id)
    assert order is not None
    assert order.paid_at is not None
    assert _payments("order") == (count + 1, cents + order.total_cents)
    assert _sample("computebill_webhook_processing_lag_seconds_count") == lag_count + 1
    assert _sample("computebill_payment_to_paid_seconds_count") == paid_count + 1


async def _count_then_fail(sessions: Sessions) -> None:
    async with unit_of_work(sessions) as db:
        PAYMENTS.count(db, kind="top_up", currency="usd", cents=5_000)
        raise RuntimeError("the fulfilment failed")


async def test_a_payment_rolled_back_is_not_counted(settings: Settings) -> None:
    before = _payments("top_up")
    async with database(settings) as sessions:
        with pytest.raises(RuntimeError):
            await _count_then_fail(sessions)
        async with unit_of_work(sessions) as db:
            PAYMENTS.count(db, kind="top_up", currency="usd", cents=700)
    assert _payments("top_up") == (before[0] + 1, before[1] + 700)


async def test_a_refund_counts_once_by_exactly_its_cents(settings: Settings) -> None:
    labels = {"kind": "order", "currency": "usd"}
    before = (
        _sample("computebill_refunds_total", **labels),
        _sample("computebill_refund_cents_total", **labels),
    )
    now = datetime.now(UTC)
    async with database(settings) as sessions:
        async with unit_of_work(sessions) as db:
            user = User(email=f"r-{secrets.token_hex(4)}@example.com", password_changed_at=now)
            db.add(user)
            await db.flush()
            order = await add_paid_order(db, user.id, [("nvidia-h100", 1, 10)], now=now)
        refund_id = f"re_{secrets.token_hex(8)}"
        for _ in range(2):  # Stripe's events may name one refund twice
            async with unit_of_work(sessions) as db:
                locked = await db.get(Order, order.id)
                assert locked is not None
                await record_refund(
                    db, locked, refund_id=refund_id, amount_cents=1_234, status="succeeded", now=now
                )
    after = (
        _sample("computebill_refunds_total", **labels),
        _sample("computebill_refund_cents_total", **labels),
    )
    assert after == (before[0] + 1, before[1] + 1_234)


# The snapshot -----------------------------------------------------------------------------------


def _event(status: EventStatus, received_at: datetime) -> StripeEvent:
    return StripeEvent(
        id=f"evt_{secrets.token_hex(8)}",
        type="checkout.session.completed",
        created=received_at,
        payload={"data": {"object": {}}},
        received_at=received_at,
        status=status,
        attempts=0,
    )


async def _known_platform(settings: Settings, now: datetime) -> None:
    """Events 3 pending (oldest 90 s), 2 processed, 1 failed; instances 2 running, 1 stopping,
    1 terminated; the running one of the first account 70 s behind its settlement; an account
    5 s of its rate below zero (within the bound: 2 × the sweep's 5 s) and one 20 s below."""
    async with database(settings) as sessions, unit_of_work(sessions) as db:
        users = [
            User(email=f"m-{secrets.token_hex(4)}@example.com", password_changed_at=now)
            for _ in range(3)
        ]
        db.add_all(users)
        await db.flush()
        db.add_all(
            [
                _event(EventStatus.PENDING, now - timedelta(seconds=90)),
                _event(EventStatus.PENDING, now - timedelta(seconds=30)),
                _event(EventStatus.PENDING, now),
                _event(EventStatus.PROCESSED, now - timedelta(hours=1)),
                _event(EventStatus.PROCESSED, now - timedelta(hours=2)),
                _event(EventStatus.FAILED, now - timedelta(hours=3)),
                CreditAccount(user_id=users[0].id, balance_millicents=5_000),
                CreditAccount(user_id=users[1].id, balance_millicents=-5_000),
                CreditAccount(user_id=users[2].id, balance_millicents=-20_000),
            ]
        )
        rate = 3_600_000  # 1,000 millicents a second
        behind = await add_metered(
            db, users[0].id, rate=rate, started_at=now - timedelta(seconds=100)
        )
        behind.billed_through_seconds = 30
        settled = await add_metered(
            db, users[1].id, rate=rate, started_at=now - timedelta(seconds=40)
        )
        settled.billed_through_seconds = 30
        stopped = await add_metered(db, users[2].id, rate=rate, started_at=now - timedelta(hours=1))
        stopped.status = InstanceStatus.STOPPING
        stopped.run_ended_at = now - timedelta(minutes=1)
        never_ran = await add_metered(db, users[2].id, rate=rate, started_at=None)
        never_ran.status = InstanceStatus.TERMINATED


async def test_the_snapshot_holds_exact_gauges_and_the_app_serves_them(
    settings: Settings, service_urls: tuple[str, str]
) -> None:
    clock = MovableClock()
    now = clock.now()
    async with own_database(settings, service_urls[0]) as own:
        await _known_platform(own, now)
        async with database(own) as sessions:
            context = job_context(own, sessions, RecordingPublisher())
            await record_metrics_snapshot(dataclasses.replace(context, clock=clock))
        async with in_process(own) as http:
            # No worker has beaten in this database: not ready, and the gauge says so.
            assert (await http.get("/readyz")).status_code == 503
            scraped = (await http.get("/metrics")).text
    expected = {
        'computebill_stripe_events{status="pending"}': 3.0,
        'computebill_stripe_events{status="processed"}': 2.0,
        'computebill_stripe_events{status="ignored"}': 0.0,
        'computebill_stripe_events{status="failed"}': 1.0,
        "computebill_stripe_event_oldest_pending_age_seconds": 90.0,
        'computebill_instances{status="running"}': 2.0,
        'computebill_instances{status="stopping"}': 1.0,
        'computebill_instances{status="terminated"}': 1.0,
        'computebill_instances{status="provisioning"}': 0.0,
        "computebill_metering_lag_seconds": 70.0,
        "computebill_metering_interval_seconds": float(settings.metering_interval_seconds),
        "computebill_credit_lowest_balance_millicents": -20_000.0,
        "computebill_credit_accounts_below_bound": 1.0,
        "computebill_queue_depth": 0.0,
        "computebill_snapshot_timestamp_seconds": now.timestamp(),
        "computebill_ready": 0.0,
    }
    lines = dict(line.rsplit(" ", 1) for line in scraped.splitlines() if line[:1] != "#")
    assert {series: float(lines[series]) for series in expected} == expected
