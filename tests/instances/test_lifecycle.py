"""Instances from paid orders: provisioned once, running within the boot time, stopped at expiry,
early on request, or when the order is refunded; failures surfaced. Real workers, real Redis."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select

from computebill.clock import SystemClock
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.instances import service
from computebill.instances.models import Instance, InstanceStatus, SimulatedMachine
from computebill.instances.provider import SimulatedProvider
from computebill.jobs import JobName, JobRequest
from computebill.queue.publisher import AppQueuePublisher
from tests.support.http import Api, api_for
from tests.support.orders import PaidLine, add_paid_order
from tests.support.settings import settings_environment


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Machines boot in well under a second; MI250X launches fail; a queue of our own."""
    return settings.model_copy(
        update={
            "redis_namespace": f"{settings.redis_namespace}-inst-{secrets.token_hex(3)}",
            "simulated_boot_min_seconds": 0.2,
            "simulated_boot_max_seconds": 0.6,
            "simulated_failing_gpus": "amd-mi250x",
        }
    )


@pytest.fixture
async def api(fast: Settings) -> AsyncIterator[Api]:
    """The app on the same queue as the workers."""
    async for value in api_for(fast):
        yield value


@pytest.fixture
def workers(fast: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two worker processes on the same queue."""
    env = settings_environment(fast, LOG_FORMAT="json")
    with (tmp_path / "workers.log").open("ab") as log:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "computebill", "worker", "--concurrency", "8"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
    yield processes
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


async def paid_order(settings: Settings, user_id: str, *lines: PaidLine) -> uuid.UUID:
    """A paid order with (gpu slug, quantity, hours) lines, as fulfilment leaves one."""
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            order = await add_paid_order(db, uuid.UUID(user_id), lines, now=datetime.now(UTC))
            return order.id
    finally:
        await engine.dispose()


async def enqueue(settings: Settings, *requests: JobRequest) -> None:
    publisher = AppQueuePublisher(settings)
    try:
        await publisher.publish(list(requests))
    finally:
        await publisher.close()


async def instances_of(settings: Settings, order_id: uuid.UUID) -> list[Instance]:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            return list(
                await db.scalars(
                    select(Instance).where(Instance.order_id == order_id).order_by(Instance.name)
                )
            )
    finally:
        await engine.dispose()


async def wait_until(
    settings: Settings,
    order_id: uuid.UUID,
    statuses: set[InstanceStatus],
    count: int,
    *,
    within: float = 15,
) -> list[Instance]:
    for _ in range(int(within * 10)):
        found = await instances_of(settings, order_id)
        if len(found) == count and {i.status for i in found} <= statuses:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError([(i.name, i.status) for i in await instances_of(settings, order_id)])


async def machines_for(settings: Settings, order_id: uuid.UUID) -> int:
    ids = [str(i.id) for i in await instances_of(settings, order_id)]
    engine = create_engine(settings)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        count = await db.scalar(select(func.count()).where(SimulatedMachine.launch_key.in_(ids)))
    await engine.dispose()
    return int(count or 0)


@pytest.mark.usefixtures("workers")
async def test_a_paid_order_gets_its_instances_running_exactly_once(
    api: Api, email: str, fast: Settings
) -> None:
    user = (await api.sign_up(email))["user"]["id"]
    order_id = await paid_order(fast, user, ("nvidia-h100", 3, 2), ("amd-mi300x", 2, 1))
    provision = JobRequest(JobName.PROVISION_ORDER, (str(order_id),))
    # Asked for three times, run by two workers at once: still five instances, five machines.
    await enqueue(fast, provision, provision, provision)
    running = await wait_until(fast, order_id, {InstanceStatus.RUNNING}, 5)
    assert await machines_for(fast, order_id) == 5
    names = sorted(i.name.rsplit("-", 1)[0] for i in running)
    assert names == ["h100x2"] * 3 + ["mi300x2"] * 2
    for instance in running:
        assert instance.ip_address is not None
        assert instance.ip_address.startswith(("203.0.113.", "198.51.100.", "192.0.2."))
        assert instance.ssh_user == "ubuntu"
        assert instance.started_at is not None
        assert instance.paid_seconds is not None
        assert instance.expires_at == instance.started_at + timedelta(seconds=instance.paid_seconds)
    assert len({i.ip_address for i in running}) == 5


@pytest.mark.usefixtures("workers")
async def test_instances_stop_when_their_paid_time_is_up_and_not_before(
    api: Api, email: str, fast: Settings
) -> None:
    user = (await api.sign_up(email))["user"]["id"]
    order_id = await paid_order(fast, user, ("nvidia-a100", 1, 1))
    await enqueue(fast, JobRequest(JobName.PROVISION_ORDER, (str(order_id),)))
    [instance] = await wait_until(fast, order_id, {InstanceStatus.RUNNING}, 1)
    assert instance.expires_at is not None
    engine = create_engine(fast)
    sessionmaker = create_sessionmaker(engine)
    provider = SimulatedProvider(sessionmaker, clock=SystemClock(), boot_seconds=(0, 0))
    for moment, expected in (
        (instance.expires_at - timedelta(seconds=1), InstanceStatus.RUNNING),
        (instance.expires_at, InstanceStatus.TERMINATED),
    ):
        await service.expire(partial(unit_of_work, sessionmaker), provider, instance.id, now=moment)
        [instance] = await instances_of(fast, order_id)
        assert instance.status is expected
    assert instance.expires_at is not None
    assert instance.terminated_at == instance.expires_at
    usage = service.usage(instance, now=instance.expires_at + timedelta(hours=5))
    assert (usage.remaining_seconds, usage.cost_so_far_cents) == (0, instance.paid_cents)
    machine = await provider.describe(str(instance.provider_id))
    assert machine.state.value == "terminated"
    await engine.dispose()


@pytest.mark.usefixtures("workers")
async def test_a_failed_launch_is_recorded_and_shown(api: Api, email: str, fast: Settings) -> None:
    pair = await api.sign_up(email)
    order_id = await paid_order(fast, pair["user"]["id"], ("amd-mi250x", 1, 1))
    await enqueue(fast, JobRequest(JobName.PROVISION_ORDER, (str(order_id),)))
    [failed] = await wait_until(fast, order_id, {InstanceStatus.FAILED}, 1)
    assert failed.failure_reason == "the host failed its health check during boot"
    order = (await api.get(f"/api/v1/orders/{order_id}", pair["access_token"])).json()
    assert [(i["status"], i["failure_reason"]) for i in order["instances"]] == [
        ("failed", "the host failed its health check during boot")
    ]


@pytest.mark.usefixtures("workers")
async def test_the_owner_can_stop_an_instance_early_and_nobody_else(
    api: Api, email: str, fast: Settings
) -> None:
    owner = await api.sign_up(email)
    stranger = await api.sign_up("stranger-" + email)
    order_id = await paid_order(fast, owner["user"]["id"], ("nvidia-h200", 1, 5))
    await enqueue(fast, JobRequest(JobName.PROVISION_ORDER, (str(order_id),)))
    [instance] = await wait_until(fast, order_id, {InstanceStatus.RUNNING}, 1)
    path = f"/api/v1/instances/{instance.id}/terminate"
    assert (await api.call("POST", path, stranger["access_token"])).status_code == 404
    listed = (await api.get("/api/v1/instances", owner["access_token"])).json()["instances"]
    assert [i["status"] for i in listed] == ["running"]
    assert 0 < listed[0]["remaining_seconds"] <= 5 * 3600
    for _ in range(2):  # idempotent
        answer = await api.call("POST", path, owner["access_token"])
        assert answer.status_code == 202
    [stopped] = await wait_until(fast, order_id, {InstanceStatus.TERMINATED}, 1)
    detail = (await api.get(f"/api/v1/instances/{instance.id}", owner["access_token"])).json()
    assert [h["to_status"] for h in detail["history"]] == [
        "provisioning",
        "running",
        "stopping",
        "terminated",
    ]
    assert stopped.terminated_at is not None


@pytest.mark.usefixtures("workers")
async def test_a_full_refund_terminates_and_a_dispute_suspends(
    api: Api, email: str, fast: Settings
) -> None:
    user = (await api.sign_up(email))["user"]["id"]
    refunded = await paid_order(fast, user, ("nvidia-b200", 2, 3))
    disputed = await paid_order(fast, user, ("amd-mi355x", 1, 3))
    await enqueue(
        fast,
        JobRequest(JobName.PROVISION_ORDER, (str(refunded),)),
        JobRequest(JobName.PROVISION_ORDER, (str(disputed),)),
    )
    await wait_until(fast, refunded, {InstanceStatus.RUNNING}, 2)
    await wait_until(fast, disputed, {InstanceStatus.RUNNING}, 1)
    engine = create_engine(fast)
    publisher = AppQueuePublisher(fast)
    async with unit_of_work(create_sessionmaker(engine), publisher) as db:
        await service.stop_order_instances(db, refunded, reason="order refunded", suspend=False)
        await service.stop_order_instances(db, disputed, reason="payment disputed", suspend=True)
    await publisher.close()
    await engine.dispose()
    await wait_until(fast, refunded, {InstanceStatus.TERMINATED}, 2)
    [suspended] = await wait_until(fast, disputed, {InstanceStatus.SUSPENDED}, 1)
    assert suspended.terminated_at is not None


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "computebill", "worker", "--concurrency", "4"],
            env=settings_environment(settings, LOG_FORMAT="json"),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def test_a_worker_killed_mid_batch_leaves_every_instance_exactly_once(
    api: Api, email: str, fast: Settings, tmp_path: Path
) -> None:
    # Claims of a dead worker pass to another after the idle timeout; keep it short here.
    quick = fast.model_copy(update={"job_idle_timeout_seconds": 5})
    user = (await api.sign_up(email))["user"]["id"]
    order_id = await paid_order(
        quick, user, *((slug, 8, 1) for slug in ("nvidia-a100", "nvidia-h100", "amd-mi300x"))
    )
    first = start_worker(quick, tmp_path / "first.log")
    await enqueue(quick, JobRequest(JobName.PROVISION_ORDER, (str(order_id),)))
    for _ in range(200):  # kill it while the batch is under way
        if any(i.provider_id for i in await instances_of(quick, order_id)):
            break
        await asyncio.sleep(0.05)
    first.kill()
    first.wait()
    second = start_worker(quick, tmp_path / "second.log")
    try:
        running = await wait_until(quick, order_id, {InstanceStatus.RUNNING}, 24, within=60)
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert len({(i.order_line_id, i.index) for i in running}) == 24
    assert await machines_for(quick, order_id) == 24
