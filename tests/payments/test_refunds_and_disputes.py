"""After payment: an admin's refunds (partial, full, never more than was paid, never twice for
one request) and a customer's dispute, each reaching the order through Stripe's webhooks."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.support.http import AppClient
from tests.support.platform import Platform, grant_admin
from tests.support.shopper import H100_UNIT_TOTAL, Shopper


@pytest.fixture(scope="module")
async def admin_account(platform: Platform) -> Shopper:
    """A signed-up user made admin on the command line, the only way there is."""
    async with AppClient(platform.settings, base_url=platform.base_url, timeout=30) as http:
        user = await Shopper(http).sign_up()
        await grant_admin(platform.settings, user.email, http=http, access_token=user.token)
    return user


@pytest.fixture
def admin(admin_account: Shopper, http: httpx.AsyncClient) -> Shopper:
    return Shopper(http, email=admin_account.email, token=admin_account.token)


def _amount_refunded_at_stripe(platform: Platform, payment_intent_id: str) -> int:
    intent = platform.emulator.client().v1.payment_intents.retrieve(
        payment_intent_id, params={"expand": ["latest_charge"]}
    )
    charge = intent.latest_charge
    assert charge is not None
    assert not isinstance(charge, str)
    return int(charge.amount_refunded)


async def test_only_an_admin_can_refund(http: httpx.AsyncClient, admin: Shopper) -> None:
    buyer = await Shopper(http).sign_up()
    order_id, _ = await buyer.buy()

    own = await buyer.refund(order_id, 100)
    assert own.status_code == 403, own.text
    assert own.headers["content-type"] == "application/problem+json"
    anonymous = await http.post(f"/api/v1/admin/orders/{order_id}/refund", json={})
    assert anonymous.status_code == 401
    order = await buyer.order(order_id)
    assert (order["status"], order["refunded_cents"], order["refunds"]) == ("paid", 0, [])

    missing = await admin.refund(str(uuid.uuid4()), 100)
    assert missing.status_code == 404, missing.text


async def test_a_partial_then_the_rest_refunds_the_order_once(
    http: httpx.AsyncClient, admin: Shopper, platform: Platform
) -> None:
    buyer = await Shopper(http).sign_up()
    order_id, _ = await buyer.buy()
    part = 1000

    # The same request three times at once, and once more: one refund at Stripe.
    first = await asyncio.gather(*(admin.refund(order_id, part, key="refund-1") for _ in range(3)))
    assert [a.status_code for a in first] == [202] * 3, [a.text for a in first]
    refund_id = first[0].json()["refund_id"]
    assert refund_id.startswith("re_")
    assert all(a.json() == {"refund_id": refund_id, "amount_cents": part} for a in first)

    order = await buyer.wait_for(order_id, "partially_refunded")
    assert order["refunded_cents"] == part
    await _wait_for_refunds(buyer, order_id, 1)
    repeated = await admin.refund(order_id, part, key="refund-1")
    assert (repeated.status_code, repeated.json()["refund_id"]) == (202, refund_id)

    too_much = await admin.refund(order_id, H100_UNIT_TOTAL - part + 1)
    assert too_much.status_code == 409, too_much.text
    assert too_much.json()["code"] == "not_refundable"

    rest = await admin.refund(order_id)  # no amount: whatever is left
    assert rest.status_code == 202, rest.text
    assert rest.json()["amount_cents"] == H100_UNIT_TOTAL - part
    order = await buyer.wait_for(order_id, "refunded")
    assert order["refunded_cents"] == H100_UNIT_TOTAL
    refunds = await _wait_for_refunds(buyer, order_id, 2)
    assert sorted((r["refund_id"], r["amount_cents"]) for r in refunds) == sorted(
        [(refund_id, part), (rest.json()["refund_id"], H100_UNIT_TOTAL - part)]
    )
    assert [h["to_status"] for h in order["history"]] == [
        "pending",
        "paid",
        "partially_refunded",
        "refunded",
    ]
    assert _amount_refunded_at_stripe(platform, order["payment_intent_id"]) == H100_UNIT_TOTAL

    nothing_left = await admin.refund(order_id, 1)
    assert nothing_left.status_code == 409, nothing_left.text


async def _wait_for_refunds(shopper: Shopper, order_id: str, count: int) -> list[dict[str, int]]:
    """`refund.created` and `charge.refunded` are separate events: wait for the refunds list."""
    for _ in range(100):
        refunds: list[dict[str, int]] = (await shopper.order(order_id))["refunds"]
        if len(refunds) >= count:
            break
        await asyncio.sleep(0.1)
    assert len(refunds) == count, refunds
    return refunds


async def test_a_pending_order_cannot_be_refunded(http: httpx.AsyncClient, admin: Shopper) -> None:
    buyer = await Shopper(http).sign_up()
    await buyer.add()
    order_id, _ = await buyer.checkout_url()
    answer = await admin.refund(order_id)
    assert answer.status_code == 409, answer.text
    assert (await buyer.order(order_id))["status"] == "pending"


@pytest.mark.parametrize("amount", [0, -5, "ten"])
async def test_a_refund_amount_must_be_a_positive_number_of_cents(
    http: httpx.AsyncClient, admin: Shopper, amount: int | str
) -> None:
    answer = await http.post(
        f"/api/v1/admin/orders/{uuid.uuid4()}/refund",
        json={"amount_cents": amount},
        headers=admin.auth,
    )
    assert answer.status_code == 422, answer.text


async def test_a_dispute_marks_the_order_disputed(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    buyer = await Shopper(http).sign_up()
    order_id, session_id = await buyer.buy()

    triggered = platform.emulator.trigger("charge.dispute.created", session_id)
    assert triggered.returncode == 0, triggered.stderr + triggered.stdout
    assert session_id in triggered.stdout

    order = await buyer.wait_for(order_id, "disputed")
    assert [h["to_status"] for h in order["history"]] == ["pending", "paid", "disputed"]
    assert order["refunded_cents"] == 0
