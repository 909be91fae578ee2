"""Stripe's events arrive in any order: a refund or a dispute applied before the payment's own
completion event still reaches its order (which is fulfilled first, from Stripe), once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from computebill.config import Settings
from computebill.db import unit_of_work
from computebill.devserver.scratch import database
from computebill.jobs import take_requested_jobs
from computebill.orders.models import Order, OrderStatus, OrderStatusChange
from computebill.payments import events, inbox
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import EventStatus, StripeEvent
from tests.support.shopper import paid_checkout
from tests.support.stripe import EmulatorProcess, payment_terms, with_stripe

REFUNDED_CENTS = 1_000


@pytest.fixture(scope="module")
def quiet_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The emulator delivering no webhooks: the test hands the events over itself."""
    emulator = EmulatorProcess(Path(tmp_path_factory.mktemp("event-order"))).start()
    yield emulator
    emulator.stop()


def _events(emulator: EmulatorProcess, *types: str) -> dict[str, dict[str, Any]]:
    listed = emulator.client().v1.events.list(params={"limit": 100})
    found: dict[str, dict[str, Any]] = {
        event.type: event.to_dict() for event in reversed(listed.data) if event.type in types
    }
    assert set(found) == set(types), sorted(found)
    return found


async def _apply(settings: Settings, event: dict[str, Any]) -> StripeEvent:
    """What the webhook and its job do with one event."""
    gateway = StripeGateway(settings)
    async with database(settings) as sessions:
        async with unit_of_work(sessions) as db:
            await inbox.store_event(db, event, now=datetime.now(UTC))
            take_requested_jobs(db)  # the test is the worker: it processes the event below
        async with unit_of_work(sessions) as db:
            await events.process_event(
                db, gateway, event["id"], terms=payment_terms(), now=datetime.now(UTC)
            )
            take_requested_jobs(db)  # provisioning and the receipt: not what this is about
        async with sessions() as db:
            stored = await db.get(StripeEvent, event["id"])
    assert stored is not None
    return stored


async def _session_id(settings: Settings, order_id: uuid.UUID) -> str:
    async with database(settings) as sessions, sessions() as db:
        session_id = await db.scalar(select(Order.checkout_session_id).where(Order.id == order_id))
    assert session_id is not None
    return session_id


async def test_a_refund_applied_before_the_payment_is_not_lost(
    settings: Settings, quiet_emulator: EmulatorProcess
) -> None:
    app_settings = with_stripe(settings, api_base=quiet_emulator.base_url, webhook_secret=None)
    order_id = await paid_checkout(app_settings)
    client = quiet_emulator.client()
    session = client.v1.checkout.sessions.retrieve(await _session_id(settings, order_id))
    client.v1.refunds.create(
        params={"payment_intent": str(session.payment_intent), "amount": REFUNDED_CENTS}
    )
    events = _events(quiet_emulator, "checkout.session.completed", "charge.refunded")

    refund = await _apply(app_settings, events["charge.refunded"])  # before the completion
    completion = await _apply(app_settings, events["checkout.session.completed"])

    assert refund.status is EventStatus.PROCESSED, refund.outcome
    assert completion.status is EventStatus.IGNORED  # the order was paid already
    async with database(settings) as sessions, sessions() as db:
        order = await db.get(Order, order_id)
        assert order is not None
        assert order.status is OrderStatus.PARTIALLY_REFUNDED
        assert order.refunded_cents == REFUNDED_CENTS
        moves = list(
            await db.scalars(
                select(OrderStatusChange.to_status)
                .where(OrderStatusChange.order_id == order.id)
                .order_by(OrderStatusChange.id)
            )
        )
    assert moves == [OrderStatus.PENDING, OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED]
