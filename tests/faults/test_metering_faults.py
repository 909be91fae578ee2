"""Metering under faults: settlement passes of two workers over the same instances at once, a
settlement worker SIGKILLed again and again, PostgreSQL stopped and started under a settling
worker, and Redis flushed while an account runs out of credit. Whatever happens, each instance's
usage entries are one contiguous cover of its run (keys `usage:<id>:<through>` strictly
increasing, the last at `billed_through_seconds`), and once a final pass has run at T every run
is charged exactly `floor(rate × seconds to T / 3600)`: nothing charged twice, no second missed.
The credit cap's sweep reads PostgreSQL alone, so an empty Redis does not keep it from stopping
an account that ran out."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from computebill.config import LogFormat, Settings
from computebill.credits.models import CreditAccount, CreditEntry, EntryKind
from computebill.credits.service import balance, verify_ledger
from computebill.db import unit_of_work
from computebill.devserver.embedded import EmbeddedPostgres
from computebill.devserver.scratch import Sessions, database
from computebill.instances import metering
from computebill.instances.models import Instance, InstanceStatus
from tests.credits.ledger import add_user, post
from tests.credits.test_concurrency import lock_waiters
from tests.faults.cluster import RedisServer
from tests.instances.metering import add_metered, assert_usage_covers
from tests.support.platform import Process
from tests.support.settings import settings_environment
from tests.support.stripe import with_stripe

pytestmark = pytest.mark.slow

ACCOUNTS = 20
PER_ACCOUNT = 10
RATE = 7_654_321  # millicents an hour: most seconds cost a whole number of millicents, not all
KILLS = 3
FUNDS = 10**12  # no account here runs out, but the one the cap test drains


@pytest.fixture
async def sessions(fault_settings: Settings) -> AsyncIterator[Sessions]:
    async with database(fault_settings) as own:
        yield own


def worker(settings: Settings, log: Path, **changes: object) -> Process:
    """A real `computebill worker` on the test's database and Redis, settling every second."""
    configured = with_stripe(
        settings,
        api_base="http://127.0.0.1:9",  # never called: no job here talks to Stripe
    ).model_copy(update={"metering_interval_seconds": 1, "log_format": LogFormat.JSON, **changes})
    argv = [sys.executable, "-m", "computebill", "worker", "--concurrency", "4"]
    return Process(argv, settings_environment(configured), log)


async def running_instances(sessions: Sessions, *, since: datetime) -> list[uuid.UUID]:
    """ACCOUNTS funded accounts with PER_ACCOUNT pay-as-you-go instances each, running since
    moments before `since` (a fraction of a second apart)."""
    ids = []
    async with unit_of_work(sessions) as db:
        for _ in range(ACCOUNTS):
            user_id = await add_user(db)
            await post(db, user_id, EntryKind.TOP_UP, FUNDS)
            for _ in range(PER_ACCOUNT):
                started = since - timedelta(seconds=random.uniform(0, 30))
                ids.append((await add_metered(db, user_id, rate=RATE, started_at=started)).id)
    return ids


async def usage_entries(sessions: Sessions) -> int:
    async with sessions() as db:
        found = await db.scalar(select(func.count()).where(CreditEntry.kind == EntryKind.USAGE))
        return int(found or 0)


async def until_settling(sessions: Sessions, process: Process, *, within: float = 40) -> None:
    """Until the worker's passes post usage (it started, and its cron schedule runs; a pass cut
    off by a kill holds no lock that keeps the next worker's passes from running)."""
    before = await usage_entries(sessions)
    deadline = time.monotonic() + within
    while await usage_entries(sessions) <= before:
        assert process.popen.poll() is None, "the worker exited"
        assert time.monotonic() < deadline, "the worker never settled"
        await asyncio.sleep(0.2)


async def assert_settled_exactly(sessions: Sessions, ids: list[uuid.UUID]) -> None:
    """A last pass at T: then every run is charged exactly to its whole seconds at T, through
    one contiguous cover of usage entries, and every balance is the sum of its entries."""
    through = datetime.now(UTC)
    async with unit_of_work(sessions) as db:
        await metering.settle_all(db, now=through)
    async with sessions() as db:
        users = set()
        for instance_id in ids:
            instance = await db.get(Instance, instance_id)
            assert instance is not None
            assert instance.started_at is not None
            seconds = (through - instance.started_at) // timedelta(seconds=1)
            charged = await assert_usage_covers(db, instance_id)
            assert charged == metering.owed_millicents(RATE, seconds), instance_id
            users.add(instance.user_id)
        assert [m for m in await verify_ledger(db) if m.user_id in users] == []


async def test_two_passes_at_once_over_the_same_instances_charge_each_second_once(
    sessions: Sessions,
) -> None:
    """Two workers' passes, each in its own transaction, over and over while the clock moves."""
    ids = await running_instances(sessions, since=datetime.now(UTC))
    passes = [0, 0]

    async def settling(index: int, until: float) -> None:
        while time.monotonic() < until:
            async with unit_of_work(sessions) as db:
                await metering.settle_all(db, now=datetime.now(UTC))
            passes[index] += 1

    until = time.monotonic() + 6
    await asyncio.gather(settling(0, until), settling(1, until))
    assert min(passes) >= 5, passes
    await assert_settled_exactly(sessions, ids)


async def test_a_settlement_worker_killed_mid_pass_again_and_again_loses_nothing(
    sessions: Sessions, fault_settings: Settings, tmp_path: Path
) -> None:
    ids = await running_instances(sessions, since=datetime.now(UTC))
    async with sessions() as db:
        held = await db.get(Instance, ids[0])
        assert held is not None
    log = tmp_path / "worker.log"
    for _ in range(KILLS):
        process = worker(fault_settings, log)
        try:
            await until_settling(sessions, process)
            # One account's row held by the test: the next pass, its instances locked, waits
            # there, and is killed mid-pass for certain.
            async with sessions() as blocker:
                await blocker.execute(
                    select(CreditAccount.user_id)
                    .where(CreditAccount.user_id == held.user_id)
                    .with_for_update()
                )
                deadline = time.monotonic() + 20
                while await lock_waiters(sessions) == 0:
                    assert time.monotonic() < deadline, "no pass waited for the account"
                    await asyncio.sleep(0.1)
                process.popen.send_signal(signal.SIGKILL)
                process.popen.wait(timeout=10)
        finally:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGKILL)
                process.popen.wait(timeout=10)
    clean = worker(fault_settings, log)
    try:
        await until_settling(sessions, clean)
        await until_settling(sessions, clean)
    finally:
        clean.stop()
    await assert_settled_exactly(sessions, ids)


async def test_with_redis_flushed_the_cap_sweep_still_stops_an_account_that_runs_out(
    sessions: Sessions, fault_settings: Settings, redis_server: RedisServer, tmp_path: Path
) -> None:
    margin_seconds, rate = 5, 36_000_000  # 10,000 millicents a second
    log = tmp_path / "worker.log"
    process = worker(
        fault_settings,
        log,
        credit_cap_sweep_seconds=1,
        stop_margin_seconds=margin_seconds,
    )
    try:
        probe = await running_instances(sessions, since=datetime.now(UTC))
        await until_settling(sessions, process)
        async with unit_of_work(sessions) as db:
            user_id = await add_user(db)
            # At the cap (5 s of burn left) some 8 s from now.
            await post(db, user_id, EntryKind.TOP_UP, 130_000)
            draining = await add_metered(db, user_id, rate=rate, started_at=datetime.now(UTC))
        # Every job, schedule and consumer group gone, twice while it runs out: the worker
        # starts its queue over each time (docs/architecture.md §5.8).
        for _ in range(2):
            assert redis_server.command("FLUSHALL") == "+OK"
            await asyncio.sleep(2)
        deadline = time.monotonic() + 30
        while True:
            async with sessions() as db:
                instance = await db.get(Instance, draining.id)
                assert instance is not None
                if instance.status is not InstanceStatus.RUNNING:
                    break
            assert time.monotonic() < deadline, "the account's instance was never stopped"
            await asyncio.sleep(0.3)
        async with sessions() as db:
            assert instance.run_ended_at is not None
            assert instance.started_at is not None
            ran = instance.run_ended_at - instance.started_at
            # Stopped by the sweep with the margin left, as its interval and the flushes allow:
            # the balance never went below zero, and what it ran was charged to the second.
            assert ran < timedelta(seconds=15), ran
            assert await balance(db, user_id) >= 0
            charged = await assert_usage_covers(db, draining.id)
            assert charged == metering.owed_millicents(rate, ran // timedelta(seconds=1))
        assert process.popen.poll() is None, "the worker exited"
        assert "worker_restarting_after_redis_failure" in log.read_text()  # the flush hit it
    finally:
        process.stop()
    await assert_settled_exactly(sessions, probe)


async def test_postgres_restarted_under_a_settling_worker_loses_nothing(
    outage_settings: Settings, postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    """The test's own embedded PostgreSQL stopped for 3 s and started again on the same data
    directory while a worker settles every second: passes cut off roll back whole."""
    async with database(outage_settings) as sessions:
        ids = await running_instances(sessions, since=datetime.now(UTC))
    process = worker(outage_settings, tmp_path / "worker.log")
    try:
        async with database(outage_settings) as sessions:
            await until_settling(sessions, process)
        await asyncio.to_thread(postgres.stop)
        try:
            await asyncio.sleep(3)
        finally:
            await asyncio.to_thread(postgres.start)
        # New connections: the test's own to the stopped server are gone.
        async with database(outage_settings) as sessions:
            await until_settling(sessions, process)
            await until_settling(sessions, process)
            assert process.popen.poll() is None, "the worker exited"
    finally:
        process.stop()
    async with database(outage_settings) as sessions:
        await assert_settled_exactly(sessions, ids)
