"""What the top-up tests share: a top-up opened at the Stripe emulator, Stripe's own events
about it stored in the inbox and processed, and the wallet's top-up entries."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.credits.models import CreditEntry, CreditTopUp
from computebill.payments import checkout, events
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import EventStatus, StripeEvent
from tests.support.stripe import EmulatorProcess, payment_terms


async def open_top_up(
    db: AsyncSession, gateway: StripeGateway, user_id: uuid.UUID, amount_cents: int
) -> CreditTopUp:
    """A pending top-up with its Checkout Session open, as `POST /credits/top-ups` leaves it."""
    now = datetime.now(UTC)
    prepared = await checkout.prepare_top_up(
        db,
        user_id=user_id,
        amount_cents=amount_cents,
        currency="usd",
        minimum_cents=1000,
        maximum_cents=500_000,
        idempotency_key=None,
        now=now,
    )
    top_up = await checkout.open_top_up_checkout(
        db, gateway, prepared.top_up, public_base_url="http://127.0.0.1:9", now=now
    )
    assert top_up.checkout_url is not None
    assert top_up.checkout_session_id is not None
    return top_up


def emulator_event(
    emulator: EmulatorProcess, event_type: str, about: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The newest event of `event_type` the emulator made whose object is `about` ours."""
    listed = emulator.client().v1.events.list(params={"type": event_type, "limit": 100})
    for event in listed.data:
        found = event.to_dict()
        if about(found["data"]["object"]):
            return found
    raise AssertionError(f"the emulator made no {event_type} about it")


async def deliver(db: AsyncSession, gateway: StripeGateway, event: dict[str, Any]) -> str:
    """Store the event as the webhook's inbox does (once per id), process it, and answer its
    outcome."""
    stored = await db.get(StripeEvent, event["id"])
    if stored is None:
        db.add(
            StripeEvent(
                id=event["id"],
                type=event["type"],
                created=datetime.fromtimestamp(event["created"], UTC),
                payload=event,
                received_at=datetime.now(UTC),
                status=EventStatus.PENDING,
                attempts=0,
            )
        )
        await db.flush()
    await events.process_event(
        db, gateway, event["id"], terms=payment_terms(), now=datetime.now(UTC)
    )
    await db.flush()
    processed = await db.get(StripeEvent, event["id"], populate_existing=True)
    assert processed is not None
    assert processed.outcome is not None
    return processed.outcome


async def top_up_entries(db: AsyncSession, user_id: uuid.UUID) -> list[tuple[str, int, str]]:
    """The user's ledger, oldest first: (kind, amount in millicents, key)."""
    rows = await db.execute(
        select(CreditEntry.kind, CreditEntry.amount_millicents, CreditEntry.idempotency_key)
        .where(CreditEntry.user_id == user_id)
        .order_by(CreditEntry.position)
    )
    return [(kind, amount, key) for kind, amount, key in rows]
