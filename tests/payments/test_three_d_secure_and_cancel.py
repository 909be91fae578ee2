"""The customer's other ways through the hosted page: a card that asks for 3-D Secure
authentication, and going back without paying."""

from __future__ import annotations

import httpx

from tests.support.platform import Platform
from tests.support.shopper import THREE_D_SECURE_CARD, Shopper, authenticate, cancel_link, pay


async def test_a_card_that_needs_authentication_pays_once_authenticated(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, checkout_url = await shopper.checkout_url()

    asked = await pay(checkout_url, THREE_D_SECURE_CARD)
    assert asked.status_code == 303
    assert asked.headers["location"].endswith("/authenticate")
    assert (await shopper.order(order_id))["status"] == "pending"  # nothing paid before that

    done = await authenticate(checkout_url, complete=True)
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"{platform.base_url}/checkout/success")
    order = await shopper.wait_for(order_id, "paid")
    assert [h["to_status"] for h in order["history"]] == ["pending", "paid"]
    assert (await shopper.cart())["items"] == []


async def test_failed_authentication_leaves_the_order_pending(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, checkout_url = await shopper.checkout_url()
    assert (await pay(checkout_url, THREE_D_SECURE_CARD)).status_code == 303

    failed = await authenticate(checkout_url, complete=False)
    assert failed.status_code == 402
    order = await shopper.order(order_id)
    assert (order["status"], order["payment_intent_id"]) == ("pending", None)
    assert len((await shopper.cart())["items"]) == 1

    # The session is still open: another card pays the same order.
    assert (await pay(checkout_url)).status_code == 303
    await shopper.wait_for(order_id, "paid")


async def test_going_back_keeps_the_order_and_its_open_checkout(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, checkout_url = await shopper.checkout_url()

    back = await cancel_link(checkout_url)
    assert back == f"{platform.base_url}/checkout/canceled?order_id={order_id}"
    assert (await shopper.order(order_id))["status"] == "pending"
    assert len((await shopper.cart())["items"]) == 1

    # Checking out the unchanged cart again returns to the same session, which still pays.
    assert await shopper.checkout_url() == (order_id, checkout_url)
    assert (await pay(checkout_url)).status_code == 303
    await shopper.wait_for(order_id, "paid")
