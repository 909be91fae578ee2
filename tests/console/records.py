"""Orders and Stripe events written straight into the database for the console's tests, with the
times, states and Stripe ids a test needs, and the checks their lists and pages share."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.orders.models import OrderStatus, OrderStatusChange
from computebill.payments.models import EventStatus, StripeEvent
from tests.support.http import Api
from tests.support.orders import add_paid_order
from tests.support.pages import Browser

DONE = (EventStatus.PROCESSED, EventStatus.IGNORED)


async def add_order(
    settings: Settings,
    user_id: str,
    *,
    created_at: datetime,
    status: OrderStatus = OrderStatus.PAID,
    needs_review: bool = False,
    stripe_ids: Mapping[str, str] | None = None,
) -> str:
    """A one-line order of `user_id`'s (one H100 for 2 h: $13.36) made at `created_at`, paid then
    moved to `status`, with these Stripe ids (`payment_intent_id`, …): its id."""
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            order = await add_paid_order(
                db, uuid.UUID(user_id), [("nvidia-h100", 1, 2)], now=created_at
            )
            order.created_at = created_at
            order.status = status
            order.needs_review = needs_review
            order.review_reason = "amount does not match" if needs_review else None
            for name, value in (stripe_ids or {}).items():
                setattr(order, name, value)
            db.add(
                OrderStatusChange(
                    order_id=order.id,
                    from_status=None,
                    to_status=OrderStatus.PAID,
                    reason="checkout paid",
                    changed_at=created_at,
                )
            )
            return str(order.id)
    finally:
        await engine.dispose()


async def add_event(
    settings: Settings,
    *,
    event_type: str,
    received_at: datetime,
    obj: dict[str, Any] | None = None,
    status: EventStatus = EventStatus.PROCESSED,
    outcome: str | None = "order paid",
    last_error: str | None = None,
) -> str:
    """A stored Stripe event about `obj` (its `data.object`): its id."""
    event_id = f"evt_{secrets.token_hex(12)}"
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            db.add(
                StripeEvent(
                    id=event_id,
                    type=event_type,
                    created=received_at,
                    payload={"id": event_id, "type": event_type, "data": {"object": obj or {}}},
                    received_at=received_at,
                    status=status,
                    attempts=1 if status is not EventStatus.FAILED else 5,
                    processed_at=received_at if status in DONE else None,
                    outcome=outcome,
                    last_error=last_error,
                )
            )
    finally:
        await engine.dispose()
    return event_id


async def every_page(api: Api, token: str, path: str, rows: str) -> list[list[str]]:
    """The ids on each page of a paged list, following `next_cursor` to the end."""
    pages: list[list[str]] = []
    cursor = ""
    while True:
        answer = await api.get(f"{path}{cursor}", token)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append([row["id"] for row in body[rows]])
        if body["next_cursor"] is None:
            return pages
        cursor = f"&cursor={body['next_cursor']}"


async def sent_to_log_in(browser: Browser, *paths: str) -> None:
    """Each page sends an anonymous visitor to the login page, to come back after."""
    for path in paths:
        answer = await browser.page(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/login?next={path}"
