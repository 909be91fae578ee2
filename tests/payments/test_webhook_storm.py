"""A webhook storm: an emulator that delivers every event twice, in shuffled order, to a platform
of its own while several customers pay at once. Every order ends paid exactly once, and every
event Stripe sent is stored exactly once and handled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from computebill.config import Settings
from computebill.devserver.scratch import Sessions, database
from tests.support.database import own_database
from tests.support.http import AppClient
from tests.support.platform import Platform, running_platform
from tests.support.shopper import Shopper, pay, pay_by_bank
from tests.support.stripe import DONE, all_events, wait_until_handled

SHOPPERS = 8
SETTLING_BANK_ACCOUNT = "000123456789"
STABLE = ("status", "history", "paid_at", "payment_intent_id", "refunded_cents", "total_cents")


@pytest.fixture(scope="module")
async def storm_settings(
    settings: Settings, service_urls: tuple[str, str]
) -> AsyncIterator[Settings]:
    """A database and a queue of the storm's own: the platform's worker and its sweep (which
    talk to the other emulator) must never pick up the storm's events, nor the reverse."""
    async with own_database(settings, service_urls[0]) as own:
        yield own


@pytest.fixture(scope="module")
def storm(storm_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    base = tmp_path_factory.mktemp("storm")
    with running_platform(storm_settings, base, "--duplicate", "--shuffle") as running:
        yield running


@pytest.fixture
async def storm_db(storm_settings: Settings) -> AsyncIterator[Sessions]:
    async with database(storm_settings) as sessions:
        yield sessions


async def _purchase(shopper: Shopper, by_bank: bool) -> str:
    await shopper.sign_up()
    await shopper.add()
    order_id, checkout_url = await shopper.checkout_url()
    if by_bank:  # completed unpaid first, settled a second later
        answer = await pay_by_bank(checkout_url, SETTLING_BANK_ACCOUNT)
    else:
        answer = await pay(checkout_url)
    assert answer.status_code == 303, answer.text
    return order_id


async def _delivery_log(emulator_url: str, within: float = 30) -> list[dict[str, Any]]:
    """The emulator's events once none has a delivery still waiting."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=emulator_url) as client:
        while True:
            log: list[dict[str, Any]] = (
                await client.get("/_emulator/deliveries", params={"limit": 1000})
            ).json()
            waiting = [
                event["id"]
                for event in log
                for delivery in event["deliveries"]
                if delivery["status"] == "pending"
            ]
            if not waiting or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert not waiting, f"deliveries still pending: {waiting}"
    return log


async def test_duplicated_shuffled_events_pay_every_order_exactly_once(
    storm: Platform, storm_db: Sessions
) -> None:
    async with AppClient(storm.settings, base_url=storm.base_url, timeout=30) as http:
        shoppers = [Shopper(http) for _ in range(SHOPPERS)]
        order_ids = await asyncio.gather(
            *(_purchase(shopper, by_bank=i % 4 == 3) for i, shopper in enumerate(shoppers))
        )
        orders = await asyncio.gather(
            *(s.wait_for(o, "paid", within=60) for s, o in zip(shoppers, order_ids, strict=True))
        )
        for shopper, order in zip(shoppers, orders, strict=True):
            assert [h["to_status"] for h in order["history"]] == ["pending", "paid"], order
            assert order["payment_intent_id"].startswith("pi_")
            assert order["needs_review"] is False
            assert (await shopper.cart())["items"] == []

        log = await _delivery_log(storm.emulator.base_url)
        sent = {event["id"] for event in log}
        for event in log:  # what the storm was: every event delivered twice, both accepted
            assert [d["status"] for d in event["deliveries"]] == ["succeeded"] * 2, event
        types = {event["type"] for event in log}
        assert {"checkout.session.completed", "checkout.session.async_payment_succeeded"} <= types

        handled = await wait_until_handled(storm_db, sent, within=30)
        stored = await all_events(storm_db)
        assert set(stored) == set(handled) == sent  # each event once; nothing else arrived
        assert all(event.status in DONE for event in stored.values())
        assert all(event.attempts == 1 for event in stored.values())

        # Nothing moved on after the storm, and nothing was provisioned twice.
        for shopper, order in zip(shoppers, orders, strict=True):
            now = await shopper.order(order["id"])
            assert {k: now[k] for k in STABLE} == {k: order[k] for k in STABLE}
            assert len(now.get("instances", [])) <= now["lines"][0]["quantity"]
