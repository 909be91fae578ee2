"""Fulfilment re-reads the session from Stripe and checks it against the order (checklist 33): a
paid session whose amount, currency or order does not match is flagged for review and alerted
on, never fulfilled. The mismatch is made by editing our own rows, as a bug elsewhere could."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import update

from computebill.devserver.scratch import Sessions
from computebill.orders.models import Order
from tests.support.platform import Platform, wait_for_log
from tests.support.shopper import H100_UNIT_TOTAL, Shopper, pay


async def _change_order(db: Sessions, order_id: str, **values: Any) -> None:
    async with db() as session, session.begin():
        await session.execute(update(Order).where(Order.id == uuid.UUID(order_id)).values(**values))


async def _pending(http: httpx.AsyncClient) -> tuple[Shopper, str, str]:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, checkout_url = await shopper.checkout_url()
    return shopper, order_id, checkout_url


async def _assert_flagged_not_fulfilled(
    platform: Platform, shopper: Shopper, order_id: str, problem: str
) -> None:
    order = await shopper.wait_until(order_id, lambda o: bool(o["needs_review"]))
    assert order["needs_review"] is True, order
    assert order["status"] == "pending"
    assert (order["paid_at"], order["payment_intent_id"]) == (None, None)
    assert [h["to_status"] for h in order["history"]] == ["pending"]
    assert order.get("instances", []) == []
    assert len((await shopper.cart())["items"]) == 1  # nothing was taken out of the cart
    alert = await wait_for_log(platform, "order_needs_review", order_id=order_id)
    assert alert["alert"] is True
    assert problem in alert["reason"]


async def test_a_paid_amount_unlike_the_orders_is_not_fulfilled(
    platform: Platform, http: httpx.AsyncClient, db: Sessions
) -> None:
    shopper, order_id, checkout_url = await _pending(http)
    await _change_order(db, order_id, total_cents=H100_UNIT_TOTAL + 1)
    assert (await pay(checkout_url)).status_code == 303
    await _assert_flagged_not_fulfilled(
        platform, shopper, order_id, f"amount {H100_UNIT_TOTAL} != {H100_UNIT_TOTAL + 1}"
    )


async def test_a_paid_currency_unlike_the_orders_is_not_fulfilled(
    platform: Platform, http: httpx.AsyncClient, db: Sessions
) -> None:
    shopper, order_id, checkout_url = await _pending(http)
    await _change_order(db, order_id, currency="eur")
    assert (await pay(checkout_url)).status_code == 303
    await _assert_flagged_not_fulfilled(platform, shopper, order_id, "currency usd != eur")


async def test_a_session_paid_for_another_users_order_is_not_fulfilled(
    platform: Platform, http: httpx.AsyncClient, db: Sessions
) -> None:
    """B's order carries the session A paid (same amount and currency): the session's metadata
    names A's order, so neither order is fulfilled."""
    a, a_order, a_checkout_url = await _pending(http)
    b, b_order, _ = await _pending(http)
    a_session = await a.session_id(a_order)
    await _change_order(db, a_order, checkout_session_id=None)
    await _change_order(db, b_order, checkout_session_id=a_session)

    assert (await pay(a_checkout_url)).status_code == 303
    await _assert_flagged_not_fulfilled(platform, b, b_order, f"metadata order {a_order}")
    assert (await a.order(a_order))["status"] == "pending"
