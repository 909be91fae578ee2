"""A checkout nobody pays ends `expired` when Stripe expires its session, and stays that way."""

from __future__ import annotations

import httpx

from computebill.devserver.scratch import Sessions
from computebill.payments.models import EventStatus
from tests.support.platform import Platform
from tests.support.shopper import DECLINED_CARD, Shopper, pay
from tests.support.stripe import WEBHOOK_SECRET, post_event, stripe_event, wait_until_handled


async def test_an_expired_session_expires_the_order(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, _ = await shopper.checkout_url()
    session_id = await shopper.session_id(order_id)

    expired = platform.emulator.client().v1.checkout.sessions.expire(session_id)
    assert expired.status == "expired"

    order = await shopper.wait_for(order_id, "expired")
    assert [h["to_status"] for h in order["history"]] == ["pending", "expired"]
    assert order["paid_at"] is None
    assert len((await shopper.cart())["items"]) == 1  # nothing was bought

    # The same cart checks out again as a new order with a new session.
    again, _ = await shopper.checkout_url()
    assert again != order_id
    assert await shopper.session_id(again) != session_id


async def test_a_declined_card_then_expiry_expires_the_order(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, checkout_url = await shopper.checkout_url()
    assert (await pay(checkout_url, DECLINED_CARD)).status_code == 402
    assert (await shopper.order(order_id))["status"] == "pending"

    platform.emulator.client().v1.checkout.sessions.expire(await shopper.session_id(order_id))
    order = await shopper.wait_for(order_id, "expired")
    assert [h["to_status"] for h in order["history"]] == ["pending", "expired"]
    assert order["payment_intent_id"] is None


async def test_a_late_expiry_event_does_not_move_a_paid_order_back(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    """Transitions only go forward: an expiry that arrives after the payment is recorded, and
    changes nothing."""
    shopper = await Shopper(http).sign_up()
    order_id, session_id = await shopper.buy()
    late = stripe_event(
        "checkout.session.expired",
        {"id": session_id, "object": "checkout.session", "status": "expired"},
    )
    assert (await post_event(http, late, WEBHOOK_SECRET)).status_code == 200

    handled = (await wait_until_handled(db, [late["id"]]))[late["id"]]
    assert handled.outcome == "stale: order is paid"
    assert handled.status is EventStatus.IGNORED  # recorded, and known to have changed nothing
    order = await shopper.order(order_id)
    assert order["status"] == "paid"
    assert [h["to_status"] for h in order["history"]] == ["pending", "paid"]
