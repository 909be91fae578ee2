"""Extending a machine by card, the whole way: the API's checkout, the emulator's page, Stripe's
signed webhook, the worker's provisioning. The same machine stops later, once, however often
the payment is told; one that stopped before the payment is not started again; an extension
refunded in full or disputed takes its hours back."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from computebill.db import unit_of_work
from computebill.devserver.scratch import Sessions
from computebill.instances import service as instances
from computebill.jobs import take_requested_jobs
from computebill.orders.models import Order
from computebill.payments.models import StripeEvent
from tests.support.platform import Platform
from tests.support.shopper import Shopper, pay
from tests.support.stripe import WEBHOOK_SECRET, post_event, wait_until_handled

HOURLY_CENTS = 668  # the shopper's H100 line: 2 GPUs, 24 vCPUs, 500 GB


async def running_machine(shopper: Shopper, order_id: str) -> dict[str, Any]:
    made: list[dict[str, Any]] = []
    for _ in range(150):
        made = (await shopper.order(order_id))["instances"]
        if [i["status"] for i in made] == ["running"]:
            return made[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"the instance of {order_id} did not run: {made}")


async def instance_of(shopper: Shopper, instance_id: str) -> dict[str, Any]:
    answer = await shopper.http.get(f"/api/v1/instances/{instance_id}", headers=shopper.auth)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def stop_time_once_moved(shopper: Shopper, instance_id: str, before: datetime) -> datetime:
    """The instance's `expires_at` once it is no longer `before` (as it is after 20 s)."""
    moved = before
    for _ in range(100):
        moved = datetime.fromisoformat((await instance_of(shopper, instance_id))["expires_at"])
        if moved != before:
            break
        await asyncio.sleep(0.2)
    return moved


async def extension_by_card(shopper: Shopper, instance_id: str, hours: int) -> dict[str, Any]:
    answer = await shopper.http.post(
        f"/api/v1/instances/{instance_id}/extensions",
        json={"hours": hours, "pay_with": "card"},
        headers=shopper.auth,
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def test_a_card_payment_extends_the_same_machine_once(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    shopper = await Shopper(http).sign_up()
    order_id, _ = await shopper.buy()
    machine = await running_machine(shopper, order_id)
    stops_at = datetime.fromisoformat(machine["expires_at"])

    extension = await extension_by_card(shopper, machine["id"], 3)
    assert extension["price_cents"] == 3 * HOURLY_CENTS
    assert (extension["expires_at"], extension["pay_with"]) == (None, "card")
    assert (await pay(extension["checkout_url"])).status_code == 303
    paid = await shopper.wait_for(extension["order_id"], "paid")
    [line] = paid["lines"]
    assert line["extends_instance_id"] == machine["id"]
    assert paid["instances"] == []  # no machine of its own

    assert await stop_time_once_moved(shopper, machine["id"], stops_at) == stops_at + timedelta(
        hours=3
    )
    listed = (await http.get("/api/v1/instances", headers=shopper.auth)).json()["instances"]
    assert [i["id"] for i in listed] == [machine["id"]]

    # Stripe tells it again: the same event, and another event of the same completed session;
    # and provisioning runs again (a retried job, the sweep). It is extended once.
    async with db() as session:
        session_id = await session.scalar(
            select(Order.checkout_session_id).where(Order.id == extension["order_id"])
        )
        completed = await session.scalar(
            select(StripeEvent).where(
                StripeEvent.type == "checkout.session.completed",
                StripeEvent.payload["data"]["object"]["id"].astext == session_id,
            )
        )
    assert completed is not None
    again = dict(completed.payload)
    another = again | {"id": f"evt_test_{secrets.token_hex(12)}"}
    for event in (again, another):
        assert (await post_event(http, event, WEBHOOK_SECRET)).status_code == 200
    handled = await wait_until_handled(db, [another["id"]])
    assert handled[another["id"]].outcome == "order already paid"
    async with unit_of_work(db) as session:
        await instances.create_instances(session, extension["order_id"], now=stops_at)
        take_requested_jobs(session)
    machine = await instance_of(shopper, machine["id"])
    assert datetime.fromisoformat(machine["expires_at"]) == stops_at + timedelta(hours=3)
    assert machine["paid_seconds"] == 13 * 3600


async def test_a_machine_terminated_before_its_extension_is_paid_stays_stopped_and_is_credited(
    http: httpx.AsyncClient,
) -> None:
    shopper = await Shopper(http).sign_up()
    order_id, _ = await shopper.buy()
    machine = await running_machine(shopper, order_id)
    extension = await extension_by_card(shopper, machine["id"], 2)

    stop = await http.post(f"/api/v1/instances/{machine['id']}/terminate", headers=shopper.auth)
    assert stop.status_code == 202, stop.text
    unused = (await http.get("/api/v1/credits", headers=shopper.auth)).json()["balance_cents"]
    assert (await pay(extension["checkout_url"])).status_code == 303
    await shopper.wait_for(extension["order_id"], "paid")

    balance = unused
    for _ in range(100):
        balance = (await http.get("/api/v1/credits", headers=shopper.auth)).json()["balance_cents"]
        if balance != unused:
            break
        await asyncio.sleep(0.2)
    assert balance == unused + 2 * HOURLY_CENTS  # the whole payment, as credit
    machine = await instance_of(shopper, machine["id"])
    assert machine["status"] in ("stopping", "terminated")
    listed = (await http.get("/api/v1/instances", headers=shopper.auth)).json()["instances"]
    assert len(listed) == 1
    entries = (await http.get("/api/v1/credits/entries", headers=shopper.auth)).json()
    [credited] = [e for e in entries["entries"] if e.get("order_id") == extension["order_id"]]
    assert credited["kind"] == "unused_time"
    assert credited["amount_millicents"] == 2 * HOURLY_CENTS * 1000


async def test_an_extension_refunded_in_full_or_disputed_takes_its_hours_back(
    http: httpx.AsyncClient, db: Sessions, platform: Platform
) -> None:
    shopper = await Shopper(http).sign_up()
    order_id, _ = await shopper.buy()
    machine = await running_machine(shopper, order_id)
    stops_at = datetime.fromisoformat(machine["expires_at"])

    async def paid_extension(hours: int, before: datetime) -> dict[str, Any]:
        extension = await extension_by_card(shopper, machine["id"], hours)
        assert (await pay(extension["checkout_url"])).status_code == 303
        paid = await shopper.wait_for(extension["order_id"], "paid")
        extended = await stop_time_once_moved(shopper, machine["id"], before)
        assert extended == before + timedelta(hours=hours)
        return paid

    # Refunded in full at Stripe: its 3 hours go; the machine's own 10 stay.
    refunded = await paid_extension(3, stops_at)
    stripe = platform.emulator.client()
    await asyncio.to_thread(
        stripe.v1.refunds.create, params={"payment_intent": refunded["payment_intent_id"]}
    )
    await shopper.wait_for(refunded["id"], "refunded")
    after_refund = await stop_time_once_moved(shopper, machine["id"], stops_at + timedelta(hours=3))
    assert after_refund == stops_at
    shown = await instance_of(shopper, machine["id"])
    assert (shown["status"], shown["paid_seconds"]) == ("running", 10 * 3600)

    # Disputed: its 2 hours go too.
    disputed = await paid_extension(2, stops_at)
    async with db() as session:
        session_id = await session.scalar(
            select(Order.checkout_session_id).where(Order.id == disputed["id"])
        )
    assert session_id is not None
    triggered = platform.emulator.trigger("charge.dispute.created", session_id)
    assert triggered.returncode == 0, triggered.stderr + triggered.stdout
    await shopper.wait_for(disputed["id"], "disputed")
    after_dispute = await stop_time_once_moved(
        shopper, machine["id"], stops_at + timedelta(hours=2)
    )
    assert after_dispute == stops_at
    shown = await instance_of(shopper, machine["id"])
    assert (shown["status"], shown["paid_seconds"]) == ("running", 10 * 3600)
