"""A mixed storm under faults: customers sign up, fill carts, check out and pay (some declined,
some going back or letting the session expire, some by bank, two refunded) while the emulator
delivers every event twice in shuffled order, the worker is SIGKILLed and restarted twice and
Redis is killed and restarted EMPTY once. Afterwards every invariant of `invariants.py` holds.

FAULT_STORM_USERS sets the number of customers (default 200: about 4.5 minutes on a 2-core
machine running other suites too; see docs/reliability.md)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from computebill.config import Settings
from computebill.devserver.scratch import Sessions, database
from computebill.orders.models import OrderStatus
from tests.faults.cluster import Cluster, RedisServer, running_cluster
from tests.faults.crowd import (
    PAYS,
    Crowd,
    Customer,
    Plan,
    customer_client,
    expect_outcomes,
    summary,
)
from tests.faults.invariants import assert_converges, read_ours
from tests.support.platform import grant_admin
from tests.support.shopper import H100_UNIT_TOTAL, Shopper

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

USERS = int(os.environ.get("FAULT_STORM_USERS", "200"))
PARTIAL_REFUND_CENTS = 1234
# Work lost with Redis waits for the instance sweep (60 s after the last change), so convergence
# is given that and the time the backlog of a large storm takes.
CONVERGE_SECONDS = 240.0


@pytest.fixture
def cluster(fault_settings: Settings, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(
        fault_settings, tmp_path, emulator_options=["--duplicate", "--shuffle"]
    ) as running:
        yield running


@pytest.fixture
async def storm_db(fault_settings: Settings) -> AsyncIterator[Sessions]:
    async with database(fault_settings) as sessions:
        yield sessions


async def _restart_worker(cluster: Cluster) -> None:
    cluster.kill_worker(0)
    await asyncio.sleep(1)  # down for a moment: webhooks keep arriving, jobs wait in Redis
    cluster.start_worker(0)
    await cluster.beating(0, after=datetime.now(UTC))


async def _restart_redis(cluster: Cluster, redis: RedisServer) -> None:
    """Every queued, scheduled, running and cron job is gone; the same worker process (not a
    new one) must run its cron schedule again: the heartbeat is a cron job like the sweeps."""
    await cluster.beating(0, after=datetime.now(UTC))  # a worker that is up and connected
    await asyncio.to_thread(redis.restart_empty)
    await cluster.beating(0, after=datetime.now(UTC))


async def _running_instances(db: Sessions, order_id: str, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        ours = await read_ours(db)
        order = next(o for o in ours.orders.values() if str(o.id) == order_id)
        owed = sum(line.quantity for line in ours.lines[order.id])
        instances = [i.status.value for i in ours.instances.get(order.id, [])]
        if instances == ["running"] * owed:
            return
        assert time.monotonic() < deadline, (
            f"order {order_id} ({order.status}, paid {order.paid_at}): instances {instances}"
        )
        await asyncio.sleep(1)


async def _refund_two(
    cluster: Cluster, db: Sessions, crowd: Crowd, settings: Settings
) -> dict[str, str]:
    """An admin refunds one paid order in full and one in part, once its instances run."""
    paid: list[Customer] = [c for c in crowd.customers if c.plan is Plan.PAY][:2]
    async with customer_client(cluster.app_urls[0], cluster.settings) as http:
        admin = await Shopper(http).sign_up()
        await grant_admin(settings, admin.email, http=http, access_token=admin.token)
        expected = {}
        for customer, amount in zip(paid, [None, PARTIAL_REFUND_CENTS], strict=True):
            await _running_instances(db, customer.order_id, within=CONVERGE_SECONDS)
            answer = await admin.refund(customer.order_id, amount)
            assert answer.status_code == 202, answer.text
            expected[customer.order_id] = "refunded" if amount is None else "partially_refunded"
    return expected


async def test_a_storm_with_worker_kills_and_an_empty_redis_restart_keeps_every_invariant(
    cluster: Cluster,
    redis_server: RedisServer,
    storm_db: Sessions,
    fault_settings: Settings,
) -> None:
    started = time.monotonic()
    crowd = Crowd(cluster.app_urls, cluster.emulator.base_url, cluster.settings, size=USERS)
    await crowd.run(
        [
            (0.15, lambda: _restart_worker(cluster)),
            (0.4, lambda: _restart_redis(cluster, redis_server)),
            (0.65, lambda: _restart_worker(cluster)),
        ]
    )
    assert cluster.worker_kills == 2
    print({"storm": summary(crowd)})  # noqa: T201 - measured figures (pytest -s)
    cluster.assert_alive()  # the worker lived through the empty Redis (it starts over)
    refunded = await _refund_two(cluster, storm_db, crowd, fault_settings)

    stripe_side, ours = await assert_converges(
        storm_db, cluster.emulator.base_url, within=CONVERGE_SECONDS
    )
    statuses = {str(o.id): o.status.value for o in ours.orders.values()}
    problems = expect_outcomes(crowd, {**statuses, **dict.fromkeys(refunded, "paid")})
    problems += [f"{i}: {statuses[i]} != {s}" for i, s in refunded.items() if statuses[i] != s]
    assert not problems, problems
    # The storm was what it claims: all of it reached Stripe, and the refunds too.
    assert len(ours.orders) == USERS
    assert {c.order_id for c in crowd.customers} <= set(statuses)
    paying = sum(1 for c in crowd.customers if c.plan in PAYS)
    assert len(stripe_side.paid_sessions) == paying
    assert sum(1 for o in ours.orders.values() if o.status is OrderStatus.REFUNDED) == 1
    refunded_cents = sum(c["amount_refunded"] for c in stripe_side.charges.values())
    assert refunded_cents == H100_UNIT_TOTAL + PARTIAL_REFUND_CENTS
    cluster.assert_alive()
    print(  # noqa: T201 - the measured figures, for the record (pytest -s)
        {
            **summary(crowd),
            "events": len(stripe_side.events),
            "total_seconds": round(time.monotonic() - started, 1),
        }
    )
