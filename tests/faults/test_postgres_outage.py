"""PostgreSQL stopped while Stripe delivers: the test's own embedded PostgreSQL (never the
machine's) is shut down right before customers pay and started again on the same data directory
a few seconds later. Meanwhile the webhook answers 503, so the emulator keeps retrying; once the
database is back every event is stored and processed once and every order is paid once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from computebill.config import Settings
from computebill.devserver.embedded import EmbeddedPostgres
from computebill.devserver.scratch import database
from tests.faults.cluster import Cluster, running_cluster
from tests.faults.crowd import customer_client
from tests.faults.invariants import assert_converges
from tests.support.shopper import Shopper, pay

pytestmark = pytest.mark.slow

CUSTOMERS = 6
OUTAGE_SECONDS = 5.0  # at least: the database stays down until every payment was answered 503


@pytest.fixture
def cluster(outage_settings: Settings, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(outage_settings, tmp_path, emulator_options=["--duplicate"]) as running:
        yield running


async def _delivery_log(emulator_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=emulator_url, timeout=30) as client:
        answer = await client.get("/_emulator/deliveries", params={"limit": 1000})
        answer.raise_for_status()
        log: list[dict[str, Any]] = answer.json()
        return log


def _codes(event: dict[str, Any]) -> list[int | None]:
    return [a["status_code"] for d in event["deliveries"] for a in d["attempts"]]


async def _wait_for_503s(emulator_url: str, session_ids: set[str], within: float = 60) -> None:
    """Until the completion event of every session was answered 503 at least once."""
    deadline = time.monotonic() + within
    while True:
        log = await _delivery_log(emulator_url)
        refused = {
            e["object_id"]
            for e in log
            if e["type"] == "checkout.session.completed" and 503 in _codes(e)
        }
        if session_ids <= refused:
            return
        assert time.monotonic() < deadline, f"no 503 for {session_ids - refused}: {log[:3]}"
        await asyncio.sleep(0.3)


async def test_webhooks_during_a_database_outage_are_refused_retried_and_applied_once(
    cluster: Cluster, postgres: EmbeddedPostgres, outage_settings: Settings
) -> None:
    async with customer_client(cluster.app_urls[0], cluster.settings) as http:
        shoppers = [Shopper(http) for _ in range(CUSTOMERS)]
        checkouts: list[tuple[str, str]] = []
        for shopper in shoppers:
            await shopper.sign_up()
            await shopper.add()
            checkouts.append(await shopper.checkout_url())
        session_ids = {url.rsplit("/", 1)[-1] for _, url in checkouts}

        await asyncio.to_thread(postgres.stop)  # a real shutdown of the postmaster
        down_at = time.monotonic()
        try:
            answers = await asyncio.gather(*(pay(url) for _, url in checkouts))
            assert [a.status_code for a in answers] == [303] * CUSTOMERS  # Stripe took the money
            await _wait_for_503s(cluster.emulator.base_url, session_ids)
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        finally:
            await asyncio.to_thread(postgres.start)  # the same data directory
        outage = time.monotonic() - down_at

        async with database(outage_settings) as db:
            stripe_side, ours = await assert_converges(db, cluster.emulator.base_url, within=90)

        for shopper, (order_id, _) in zip(shoppers, checkouts, strict=True):
            order = await shopper.order(order_id)
            assert [h["to_status"] for h in order["history"]] == ["pending", "paid"], order

    assert len(stripe_side.paid_sessions) == CUSTOMERS
    assert set(stripe_side.paid_sessions) == session_ids
    # Each event stored once, and its one job processed it: no retry after a failure.
    assert set(ours.events) == set(stripe_side.events)
    assert all(event.attempts == 1 for event in ours.events.values()), [
        (e.id, e.attempts, e.last_error) for e in ours.events.values() if e.attempts != 1
    ]
    # What the emulator saw: refusals while the database was down, then every delivery accepted.
    log = await _delivery_log(cluster.emulator.base_url)
    refused = [e for e in log if 503 in _codes(e)]
    assert {e["object_id"] for e in refused if e["type"] == "checkout.session.completed"} == (
        session_ids
    )
    for event in log:
        assert [d["status"] for d in event["deliveries"]] == ["succeeded"] * 2, event
    refusals: set[int | None] = set()
    for event in refused:  # each refused delivery was retried until it was accepted
        for delivery in event["deliveries"]:
            codes = [attempt["status_code"] for attempt in delivery["attempts"]]
            if 503 in codes:
                assert codes[-1] == 200, event
                refusals |= set(codes[:-1])
    assert outage >= OUTAGE_SECONDS
    assert make_url(outage_settings.required_database_url).port == postgres.port
    # Refused with 503 (so Stripe retries; also while PostgreSQL shuts down or starts up, when
    # asyncpg reports SQLSTATE 57P03) or cut off (None): never accepted, never a 500.
    assert refusals <= {503, None}, refusals
