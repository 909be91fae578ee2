"""Checking out twice never makes two orders for one purchase: the same Idempotency-Key, or an
unchanged cart whose checkout is still open, answers with the order that already exists."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.platform import Platform
from tests.support.shopper import A100, H100_UNIT_TOTAL, Shopper


async def _order_ids(shopper: Shopper) -> list[str]:
    answer = await shopper.orders(limit=100)
    assert answer.status_code == 200, answer.text
    return [order["id"] for order in answer.json()["orders"]]


async def test_the_same_key_answers_with_the_same_order_and_session(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    first = await shopper.checkout(key="checkout-1")
    again = await shopper.checkout(key="checkout-1")
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json()
    assert await _order_ids(shopper) == [first.json()["order_id"]]

    sessions = platform.emulator.client().v1.checkout.sessions.list(
        params={"customer": await _customer_of(shopper, first.json()["order_id"], platform)}
    )
    assert len(sessions.data) == 1


async def _customer_of(shopper: Shopper, order_id: str, platform: Platform) -> str:
    session_id = await shopper.session_id(order_id)
    session = platform.emulator.client().v1.checkout.sessions.retrieve(session_id)
    assert session.customer is not None
    return str(session.customer)


async def test_concurrent_requests_with_one_key_make_one_order(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    answers = await asyncio.gather(*(shopper.checkout(key="double-click") for _ in range(5)))
    assert [a.status_code for a in answers] == [201] * 5, [a.text for a in answers]
    assert len({(a.json()["order_id"], a.json()["checkout_url"]) for a in answers}) == 1
    assert len(await _order_ids(shopper)) == 1


async def test_the_same_key_for_another_cart_is_a_conflict(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    first = await shopper.checkout(key="checkout-1")
    assert first.status_code == 201, first.text
    await shopper.add(A100)

    answer = await shopper.checkout(key="checkout-1")
    assert answer.status_code == 409, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "conflict"
    assert await _order_ids(shopper) == [first.json()["order_id"]]


async def test_an_unchanged_cart_reuses_its_open_checkout(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    first = await shopper.checkout()
    again = await shopper.checkout()
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()

    together = await asyncio.gather(*(shopper.checkout() for _ in range(4)))
    assert {a.json()["order_id"] for a in together} == {first.json()["order_id"]}
    assert await _order_ids(shopper) == [first.json()["order_id"]]


async def test_a_changed_cart_makes_a_new_order(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    first, _ = await shopper.checkout_url()
    await shopper.add(A100)
    second, second_url = await shopper.checkout_url()
    assert second != first
    assert await _order_ids(shopper) == [second, first]

    old, new = await shopper.order(first), await shopper.order(second)
    assert old["checkout_session_id"] != new["checkout_session_id"]
    assert new["checkout_url"] == second_url
    assert len(new["lines"]) == 2
    assert new["total_cents"] > old["total_cents"] == H100_UNIT_TOTAL


async def test_a_new_key_for_the_same_cart_is_a_new_order(http: httpx.AsyncClient) -> None:
    """A key names one checkout attempt: a different key is a different attempt."""
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    first = await shopper.checkout(key="attempt-1")
    second = await shopper.checkout(key="attempt-2")
    assert first.json()["order_id"] != second.json()["order_id"]


async def test_a_price_sent_by_the_client_is_ignored(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    """Checklist 34: the order and the Stripe session carry the catalog's price."""
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    answer = await shopper.checkout(
        total_cents=1,
        amount_total=1,
        currency="jpy",
        unit_amount=1,
        line_items=[{"price_data": {"unit_amount": 1, "currency": "usd"}, "quantity": 1}],
    )
    assert answer.status_code == 201, answer.text
    order = await shopper.order(answer.json()["order_id"])
    assert (order["total_cents"], order["currency"]) == (H100_UNIT_TOTAL, "usd")
    assert [line["line_total_cents"] for line in order["lines"]] == [H100_UNIT_TOTAL]

    session = platform.emulator.client().v1.checkout.sessions.retrieve(order["checkout_session_id"])
    assert (session.amount_total, session.currency) == (H100_UNIT_TOTAL, "usd")
    assert session.metadata is not None
    assert session.metadata["order_id"] == order["id"]


async def test_a_price_sent_with_a_cart_item_is_ignored(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add(unit_total_cents=1, line_total_cents=1, gpu_hour_cents=1, price=1)
    order_id, _ = await shopper.checkout_url()
    order = await shopper.order(order_id)
    assert order["total_cents"] == H100_UNIT_TOTAL
    assert order["lines"][0]["gpu_hour_cents"] == 249


async def test_an_empty_cart_cannot_be_checked_out(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    for key in (None, "empty-1"):
        answer = await shopper.checkout(key=key)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "empty_cart"
    assert await _order_ids(shopper) == []


async def test_checking_out_needs_a_signed_in_user(http: httpx.AsyncClient) -> None:
    answer = await http.post("/api/v1/checkout")
    assert answer.status_code == 401, answer.text
