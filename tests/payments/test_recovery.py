"""What recovers work that webhooks and jobs did not finish: retries ending in a visible failure,
`computebill events replay`, and reconciliation of pending orders with Stripe."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from computebill.audit.models import AuditEntry
from computebill.clock import SystemClock
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.devserver.embedded import free_port
from computebill.jobs import Attempt, current_attempt
from computebill.orders.models import OrderStatus
from computebill.payments import events, inbox
from computebill.payments.gateway import PaymentProviderUnavailable, StripeGateway
from computebill.payments.jobs import process_stripe_event
from computebill.payments.models import EventStatus, StripeEvent
from computebill.queue.publisher import AppQueuePublisher
from tests.support.database import own_database
from tests.support.http import in_process
from tests.support.jobs import job_context
from tests.support.settings import run_cli
from tests.support.shopper import Shopper, pay
from tests.support.stripe import EmulatorProcess, payment_terms, stripe_event, with_stripe


async def test_an_event_that_keeps_failing_ends_failed_and_can_be_replayed(
    settings: Settings, service_urls: tuple[str, str]
) -> None:
    # A database and queue of its own: no running worker or sweep may touch this event.
    async with own_database(settings, service_urls[0]) as own:
        await check_failing_event_and_replay(own)


async def check_failing_event_and_replay(settings: Settings) -> None:
    # Stripe cannot be reached, so fulfilment (which re-reads the session) fails every try.
    unreachable = with_stripe(settings, api_base=f"http://127.0.0.1:{free_port()}")
    event = stripe_event(
        "checkout.session.completed",
        {"id": "cs_test_unreachable", "object": "checkout.session", "payment_status": "paid"},
    )
    engine = create_engine(unreachable)
    sessionmaker = create_sessionmaker(engine)
    publisher = AppQueuePublisher(unreachable)
    async with unit_of_work(sessionmaker, publisher) as db:
        assert await inbox.store_event(db, event, now=SystemClock().now())
    context = job_context(unreachable, sessionmaker, publisher)

    async def attempt(number: int) -> StripeEvent:
        token = current_attempt.set(Attempt(number=number, max_tries=6))
        try:
            with pytest.raises(PaymentProviderUnavailable):
                await process_stripe_event(context, event["id"])
        finally:
            current_attempt.reset(token)
        async with unit_of_work(sessionmaker) as db:
            stored = await db.get(StripeEvent, event["id"])
        assert stored is not None
        return stored

    first = await attempt(1)
    assert (first.status, first.attempts) == (EventStatus.PENDING, 1)
    assert "PaymentProviderUnavailable" in str(first.last_error)
    last = await attempt(6)
    assert (last.status, last.attempts) == (EventStatus.FAILED, 2)
    assert last.processed_at is None

    status, output = await run_cli(settings, "events", "replay", event["id"])
    assert status == 0, output
    async with unit_of_work(sessionmaker) as db:
        replayed = await db.get(StripeEvent, event["id"])
    assert replayed is not None
    assert (replayed.status, replayed.last_error) == (EventStatus.PENDING, None)
    async with unit_of_work(sessionmaker) as db:
        (entry,) = await db.scalars(select(AuditEntry).where(AuditEntry.target_id == event["id"]))
    assert (entry.action, entry.actor_id) == ("event.replayed", None)
    assert entry.actor.startswith("command line (")
    assert (await run_cli(settings, "events", "replay", "evt_never_received"))[0] == 1
    await publisher.close()
    await engine.dispose()


async def test_reconciliation_settles_orders_whose_webhooks_never_came(
    settings: Settings, service_urls: tuple[str, str], tmp_path: Path
) -> None:
    quiet = EmulatorProcess(tmp_path / "emulator").start()  # forwards no webhooks at all
    try:
        async with own_database(settings, service_urls[0]) as own:  # no cron reconciles for us
            await check_reconciliation(with_stripe(own, api_base=quiet.base_url), quiet)
    finally:
        quiet.stop()


async def check_reconciliation(shop: Settings, quiet: EmulatorProcess) -> None:
    async with in_process(shop) as http:
        paid_buyer = await Shopper(http).sign_up()
        await paid_buyer.add()
        paid_id, paid_url = await paid_buyer.checkout_url()
        assert (await pay(paid_url)).status_code == 303
        lapsed_buyer = await Shopper(http).sign_up()
        await lapsed_buyer.add()
        lapsed_id, _ = await lapsed_buyer.checkout_url()
        lapsed = await lapsed_buyer.order(lapsed_id)
        quiet.client().v1.checkout.sessions.expire(lapsed["checkout_session_id"])
        assert (await paid_buyer.order(paid_id))["status"] == "pending"

    gateway = StripeGateway(shop)
    engine = create_engine(shop)
    sessionmaker = create_sessionmaker(engine)
    publisher = AppQueuePublisher(shop)
    now = SystemClock().now()
    async with unit_of_work(sessionmaker, publisher) as db:
        young = await events.pending_orders_to_reconcile(db, now=now)
        due = await events.pending_orders_to_reconcile(db, now=now + timedelta(minutes=6))
    assert {str(i) for i in young} & {paid_id, lapsed_id} == set()  # not before 5 minutes
    assert {paid_id, lapsed_id} <= {str(i) for i in due}
    outcomes = {}
    for order_id in (paid_id, lapsed_id):
        async with unit_of_work(sessionmaker, publisher) as db:
            outcomes[order_id] = await events.reconcile_order(
                db,
                gateway,
                next(i for i in due if str(i) == order_id),
                terms=payment_terms(),
                now=now,
            )
    await publisher.close()
    await engine.dispose()
    assert outcomes == {paid_id: "order paid", lapsed_id: "order expired"}
    async with in_process(shop) as http:
        paid_buyer.http, lapsed_buyer.http = http, http
        assert (await paid_buyer.order(paid_id))["status"] == OrderStatus.PAID
        assert (await lapsed_buyer.order(lapsed_id))["status"] == OrderStatus.EXPIRED
