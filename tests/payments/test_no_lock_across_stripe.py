"""Stripe is never asked while a row is locked: while each call is in flight, another transaction
can lock the order (and the event) at once. The gateway here answers like Stripe, after trying
those locks with NOWAIT from a connection of its own."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import select

from computebill.auth.models import User
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.devserver.scratch import Sessions
from computebill.orders.models import Order, OrderStatus
from computebill.payments import events, inbox, refunds
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import EventStatus, StripeEvent
from tests.support.orders import add_paid_order
from tests.support.state_machines import JobPool
from tests.support.stripe import payment_terms, stripe_event


class ProbingGateway(StripeGateway):
    """Stripe's answers, each given only after trying to lock the rows with NOWAIT."""

    def __init__(self, settings: Settings, sessions: Sessions, order: Order, *, paid: bool) -> None:
        super().__init__(settings)
        self.sessions = sessions
        self.order = order
        self.paid = paid
        self.event_id: str | None = None
        self.payment_intent_id = f"pi_test_{secrets.token_hex(8)}"
        self.calls: list[str] = []
        self.blocked: list[str] = []

    async def _probe(self, call: str) -> None:
        self.calls.append(call)
        async with self.sessions() as other:
            try:
                await other.execute(
                    select(Order.id).where(Order.id == self.order.id).with_for_update(nowait=True)
                )
                if self.event_id is not None:
                    await other.execute(
                        select(StripeEvent.id)
                        .where(StripeEvent.id == self.event_id)
                        .with_for_update(nowait=True)
                    )
            except sqlalchemy.exc.DBAPIError:
                self.blocked.append(call)
            await other.rollback()

    async def retrieve_checkout(self, session_id: str) -> dict[str, Any]:
        await self._probe("retrieve_checkout")
        return {
            "id": session_id,
            "status": "complete" if self.paid else "open",
            "payment_status": "paid" if self.paid else "unpaid",
            "amount_total": self.order.total_cents,
            "currency": self.order.currency,
            "metadata": {"order_id": str(self.order.id)},
            "payment_intent": {
                "id": self.payment_intent_id,
                "latest_charge": f"ch_test_{secrets.token_hex(8)}",
            },
        }

    async def checkout_of_payment(self, payment_intent_id: str) -> str | None:
        await self._probe("checkout_of_payment")
        return self.order.checkout_session_id

    async def refund(self, *, payment_intent_id: str, amount_cents: int, key: str) -> str:
        await self._probe("refund")
        return f"re_{secrets.token_hex(6)}"


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(settings)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _order(sessions: Sessions, status: OrderStatus) -> Order:
    """An order with a Checkout Session, in `status` (paid ones with their payment)."""
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as db:
        user = User(
            email=f"locks-{secrets.token_hex(4)}@example.com",
            password_changed_at=now,
            email_verified_at=now,
        )
        db.add(user)
        await db.flush()
        order = await add_paid_order(db, user.id, [("nvidia-h100", 1, 1)], now=now)
        order.status = status
        order.checkout_session_id = f"cs_test_{secrets.token_hex(8)}"
        if status is OrderStatus.PAID:
            order.payment_intent_id = f"pi_test_{secrets.token_hex(8)}"
        else:
            order.paid_at = None
    return order


async def test_reconciliation_asks_stripe_once_with_nothing_locked(
    settings: Settings, sessions: Sessions
) -> None:
    order = await _order(sessions, OrderStatus.PENDING)
    gateway = ProbingGateway(settings, sessions, order, paid=True)
    jobs = JobPool()
    async with unit_of_work(sessions, jobs) as db:
        outcome = await events.reconcile_order(
            db, gateway, order.id, terms=payment_terms(), now=datetime.now(UTC)
        )
    assert outcome == "order paid"
    assert (gateway.calls, gateway.blocked) == (["retrieve_checkout"], [])
    async with sessions() as db:
        assert await db.scalar(select(Order.status).where(Order.id == order.id)) is (
            OrderStatus.PAID
        )


async def test_a_refund_is_asked_for_with_the_order_unlocked(
    settings: Settings, sessions: Sessions
) -> None:
    order = await _order(sessions, OrderStatus.PAID)
    gateway = ProbingGateway(settings, sessions, order, paid=True)
    async with unit_of_work(sessions) as db:
        _, amount = await refunds.request_refund(
            db, gateway, order_id=order.id, amount_cents=None, idempotency_key=None
        )
    assert amount == order.total_cents
    assert (gateway.calls, gateway.blocked) == (["refund"], [])


@pytest.mark.parametrize(
    ("event_type", "reads"),
    [
        ("checkout.session.completed", ["retrieve_checkout"]),
        # A refund of a payment no order knows yet: its checkout is found and fulfilled first.
        ("refund.created", ["checkout_of_payment", "retrieve_checkout"]),
    ],
)
async def test_an_event_reads_stripe_before_locking_the_event_or_the_order(
    settings: Settings, sessions: Sessions, event_type: str, reads: list[str]
) -> None:
    order = await _order(sessions, OrderStatus.PENDING)
    assert order.checkout_session_id is not None
    gateway = ProbingGateway(settings, sessions, order, paid=True)
    obj: dict[str, Any] = (
        {"id": order.checkout_session_id, "object": "checkout.session", "payment_status": "paid"}
        if event_type.startswith("checkout.")
        else {
            "id": f"re_{uuid.uuid4().hex[:12]}",
            "object": "refund",
            "amount": 100,
            "payment_intent": gateway.payment_intent_id,
            "status": "succeeded",
        }
    )
    event = stripe_event(event_type, obj)
    gateway.event_id = event["id"]
    jobs = JobPool()
    async with unit_of_work(sessions, jobs) as db:
        assert await inbox.store_event(db, event, now=datetime.now(UTC))
    async with unit_of_work(sessions, jobs) as db:
        await events.process_event(
            db, gateway, event["id"], terms=payment_terms(), now=datetime.now(UTC)
        )
    assert (gateway.calls, gateway.blocked) == (reads, [])
    async with sessions() as db:
        stored = await db.get(StripeEvent, event["id"])
        assert stored is not None
        assert stored.status is EventStatus.PROCESSED, stored.outcome
        paid = await db.scalar(select(Order.status).where(Order.id == order.id))
    assert paid is OrderStatus.PAID
