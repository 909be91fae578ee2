"""The whole purchase, through the emulator over HTTP: cart → checkout → hosted page → webhook →
order paid; and the ways a payment can go instead."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.mail.models import OutboxEmail
from tests.support.markup import elements
from tests.support.platform import Platform
from tests.support.shopper import A100, H100_UNIT_TOTAL, Shopper, pay, pay_by_bank


async def test_a_card_payment_makes_the_order_paid(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add(quantity=2)
    order_id, checkout_url = await shopper.checkout_url()
    assert checkout_url.startswith(platform.emulator.base_url + "/c/pay/cs_test_")
    pending = await shopper.order(order_id)
    assert pending["status"] == "pending"
    assert pending["total_cents"] == 2 * H100_UNIT_TOTAL

    answer = await pay(checkout_url)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(
        f"{platform.base_url}/checkout/success?session_id=cs_test_"
    )

    order = await shopper.wait_for(order_id, "paid")
    assert order["payment_intent_id"].startswith("pi_")
    assert [h["to_status"] for h in order["history"]] == ["pending", "paid"]
    assert [(line["gpu_slug"], line["quantity"]) for line in order["lines"]] == [("nvidia-h100", 2)]
    assert (await shopper.cart())["items"] == []

    # Provisioning follows the payment: two instances, booted, with their paid hours running.
    for _ in range(100):
        instances = (await shopper.order(order_id))["instances"]
        if len(instances) == 2 and all(i["status"] == "running" for i in instances):
            break
        await asyncio.sleep(0.2)
    assert [(i["status"], i["gpu_slug"]) for i in instances] == [("running", "nvidia-h100")] * 2
    assert all(i["remaining_seconds"] <= 10 * 3600 for i in instances)

    receipt = await wait_for_receipt(platform, order_id)
    assert receipt.recipient == shopper.email
    assert f"Order {order_id}" in receipt.body
    assert "Total: $133.60" in receipt.body


async def test_stripe_shows_each_line_as_the_cart_describes_it(
    http: httpx.AsyncClient, platform: Platform
) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add(quantity=2)
    await shopper.add(A100 | {"region": "eu-central-1"})
    order_id, checkout_url = await shopper.checkout_url()
    session_id = (await shopper.order(order_id))["checkout_session_id"]
    key = platform.app_settings.stripe_secret_key
    assert key is not None

    # What Stripe keeps: the product's name and description, and the machines as the quantity.
    async with httpx.AsyncClient(base_url=platform.emulator.base_url) as stripe:
        listed = await stripe.get(
            f"/v1/checkout/sessions/{session_id}/line_items",
            params={"expand[]": "data.price.product"},
            headers={"Authorization": f"Bearer {key.get_secret_value()}"},
        )
        page = await stripe.get(checkout_url.removeprefix(platform.emulator.base_url))
    assert listed.status_code == 200, listed.text
    described = [
        (item["description"], item["price"]["product"]["description"], item["quantity"])
        for item in listed.json()["data"]
    ]
    assert described == [
        ("NVIDIA H100 SXM × 2", "24 vCPUs · 500 GB NVMe · 10 h · us-east-1", 2),
        ("NVIDIA A100 80GB × 1", "12 vCPUs · 500 GB NVMe · 5 h · eu-central-1", 1),
    ]

    # And the pay page shows it, line by line.
    shown = [line.text for line in elements(page.text, "data-line-item")]
    assert shown == [
        "NVIDIA H100 SXM × 2 24 vCPUs · 500 GB NVMe · 10 h · us-east-1 Qty 2",
        "NVIDIA A100 80GB × 1 12 vCPUs · 500 GB NVMe · 5 h · eu-central-1 Qty 1",
    ]


async def wait_for_receipt(platform: Platform, order_id: str) -> OutboxEmail:
    engine = create_engine(platform.settings)
    try:
        for _ in range(100):
            async with unit_of_work(create_sessionmaker(engine)) as db:
                email = await db.scalar(
                    select(OutboxEmail).where(OutboxEmail.dedupe_key == f"receipt:{order_id}")
                )
            if email is not None:
                return email
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    raise AssertionError(f"no receipt for order {order_id}")


async def test_a_declined_card_leaves_the_order_pending(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, checkout_url = await shopper.checkout_url()
    answer = await pay(checkout_url, "4000000000000002")
    assert answer.status_code == 402
    assert (await shopper.order(order_id))["status"] == "pending"
    assert len((await shopper.cart())["items"]) == 1


async def test_a_delayed_bank_payment_settles_later(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, checkout_url = await shopper.checkout_url()
    assert (await pay_by_bank(checkout_url, "000123456789")).status_code == 303
    order = await shopper.wait_for(order_id, "paid")
    assert [h["to_status"] for h in order["history"]] == ["pending", "paid"]


async def test_a_failed_bank_payment_fails_the_order(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, checkout_url = await shopper.checkout_url()
    assert (await pay_by_bank(checkout_url, "000111111113")).status_code == 303
    await shopper.wait_for(order_id, "payment_failed")
    assert len((await shopper.cart())["items"]) == 1
