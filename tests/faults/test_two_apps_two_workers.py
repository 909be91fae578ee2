"""Two app processes and two workers on one database and one Redis: the emulator delivers every
event to both apps (as Stripe does to each endpoint), twice and shuffled, so the same event is
stored and processed concurrently by different processes; customers are split over the apps, and
one worker is SIGKILLed and restarted mid-storm. The invariants of `invariants.py` hold.

FAULT_TWO_APPS_USERS sets the number of customers (default 40)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from computebill.config import Settings
from computebill.devserver.scratch import Sessions, database
from tests.faults.cluster import Cluster, running_cluster
from tests.faults.crowd import PAYS, Crowd, expect_outcomes, summary
from tests.faults.invariants import assert_converges

pytestmark = pytest.mark.slow

USERS = int(os.environ.get("FAULT_TWO_APPS_USERS", "40"))


@pytest.fixture
def cluster(fault_settings: Settings, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(
        fault_settings,
        tmp_path,
        apps=2,
        workers=2,
        emulator_options=["--duplicate", "--shuffle"],
    ) as running:
        yield running


@pytest.fixture
async def shared_db(fault_settings: Settings) -> AsyncIterator[Sessions]:
    async with database(fault_settings) as sessions:
        yield sessions


async def _restart_second_worker(cluster: Cluster) -> None:
    await cluster.beating(1, after=datetime.now(UTC))  # it was up and working
    cluster.kill_worker(1)
    await asyncio.sleep(1)
    cluster.start_worker(1)


async def test_two_apps_and_two_workers_keep_every_invariant(
    cluster: Cluster, shared_db: Sessions
) -> None:
    crowd = Crowd(cluster.app_urls, cluster.emulator.base_url, cluster.settings, size=USERS)
    await crowd.run([(0.4, lambda: _restart_second_worker(cluster))])

    stripe_side, ours = await assert_converges(shared_db, cluster.emulator.base_url, within=180)
    statuses = {str(o.id): o.status.value for o in ours.orders.values()}
    problems = expect_outcomes(crowd, statuses)
    assert not problems, problems
    assert len(ours.orders) == USERS
    assert len(stripe_side.paid_sessions) == sum(1 for c in crowd.customers if c.plan in PAYS)
    # Both apps took customers, and every event reached both apps, twice each.
    assert {str(c.shopper.http.base_url).rstrip("/") for c in crowd.customers} == set(
        cluster.app_urls
    )
    endpoints = sorted(f"{url}/webhooks/stripe" for url in cluster.app_urls for _ in range(2))
    log = await _settled_deliveries(cluster.emulator.base_url)
    assert {event["id"] for event in log} == set(stripe_side.events)
    answers: Counter[int | None] = Counter()
    for event in log:
        assert sorted(d["url"] for d in event["deliveries"]) == endpoints, event
        assert {d["status"] for d in event["deliveries"]} == {"succeeded"}, event
        answers.update(a["status_code"] for d in event["deliveries"] for a in d["attempts"])
    print({"two_apps": summary(crowd), "webhook_answers": dict(answers)})  # noqa: T201
    cluster.assert_alive()


async def _settled_deliveries(emulator_url: str, within: float = 60) -> list[dict[str, Any]]:
    """The emulator's delivery log once no delivery waits for a retry."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=emulator_url, timeout=30) as client:
        while True:
            answer = await client.get("/_emulator/deliveries", params={"limit": 1000})
            log: list[dict[str, Any]] = answer.json()
            waiting = [
                (event["id"], [a["status_code"] for a in d["attempts"]])
                for event in log
                for d in event["deliveries"]
                if d["status"] == "pending"
            ]
            if not waiting:
                return log
            assert time.monotonic() < deadline, f"deliveries still waiting: {waiting[:5]}"
            await asyncio.sleep(0.5)
