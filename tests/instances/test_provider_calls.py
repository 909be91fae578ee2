"""The instance operations call the provider between transactions, never under a row lock nor
with a connection held: so more of them at once than the pool has connections all finish, and
what changed while the provider was answering is re-checked under the lock, never undone."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.auth.models import User
from computebill.clock import SystemClock
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.instances import service
from computebill.instances.models import Instance, InstanceStatus, SimulatedMachine
from computebill.instances.provider import LaunchSpec, Machine, SimulatedProvider
from computebill.jobs import take_requested_jobs
from tests.support.orders import add_paid_order

POOL_SIZE = 2  # connections
DEADLINE = timedelta(minutes=5)


class Interleaving(SimulatedProvider):
    """The simulated provider, running `meanwhile` while it answers a launch or a look."""

    meanwhile: Callable[[], Awaitable[None]] | None = None

    async def _interleave(self) -> None:
        step, self.meanwhile = self.meanwhile, None
        if step is not None:
            await step()

    async def launch(self, spec: LaunchSpec) -> str:
        provider_id = await super().launch(spec)
        await self._interleave()
        return provider_id

    async def describe(self, provider_id: str) -> Machine:
        machine = await super().describe(provider_id)
        await self._interleave()
        return machine


@dataclass
class Fleet:
    sessions: async_sessionmaker[AsyncSession]
    provider: Interleaving
    clock: SystemClock

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[AsyncSession]:
        """The test plays the worker: the jobs the operations ask for are dropped."""
        async with unit_of_work(self.sessions) as db:
            yield db
            take_requested_jobs(db)

    async def paid_instances(self, count: int) -> list[uuid.UUID]:
        """A paid order's `count` instances, made (provisioning) but not launched."""
        now = self.clock.now()
        async with self.unit() as db:
            user = User(
                email=f"calls-{secrets.token_hex(6)}@example.com",
                password_changed_at=now,
                email_verified_at=now,
            )
            db.add(user)
            await db.flush()
            order = await add_paid_order(db, user.id, [("nvidia-h100", count, 1)], now=now)
            await service.create_instances(db, order.id, now=now)
            return list(await db.scalars(select(Instance.id).where(Instance.order_id == order.id)))

    async def instance(self, instance_id: uuid.UUID) -> tuple[Instance, SimulatedMachine | None]:
        async with self.unit() as db:
            instance = await db.get(Instance, instance_id)
            assert instance is not None
            machine = await db.scalar(
                select(SimulatedMachine).where(SimulatedMachine.launch_key == str(instance_id))
            )
            return instance, machine

    async def owner_stops(self, instance_id: uuid.UUID) -> None:
        """The owner's request, then the stop job it asks for."""
        async with self.unit() as db:
            instance = await db.get(Instance, instance_id)
            assert instance is not None
            await service.request_stop(
                db, user_id=instance.user_id, instance_id=instance_id, now=self.clock.now()
            )
        await service.stop(
            self.unit, self.provider, instance_id, reason="stopped", now=self.clock.now()
        )


@pytest.fixture
async def fleet(settings: Settings) -> AsyncIterator[Fleet]:
    engine = create_engine(settings.model_copy(update={"database_pool_size": POOL_SIZE}))
    sessions = create_sessionmaker(engine)
    clock = SystemClock()
    yield Fleet(sessions, Interleaving(sessions, clock=clock, boot_seconds=(0, 0)), clock)
    await engine.dispose()


async def test_more_operations_at_once_than_pool_connections_all_finish(fleet: Fleet) -> None:
    ids = await fleet.paid_instances(8)
    assert len(ids) > POOL_SIZE
    now = fleet.clock.now()
    # Before, each waited (10 s, then failed) for a second connection while holding one.
    async with asyncio.timeout(30):
        await asyncio.gather(*(service.launch(fleet.unit, fleet.provider, i, now=now) for i in ids))
        await asyncio.gather(
            *(service.poll(fleet.unit, fleet.provider, i, now=now, deadline=DEADLINE) for i in ids)
        )
        assert {(await fleet.instance(i))[0].status for i in ids} == {InstanceStatus.RUNNING}
        await asyncio.gather(
            *(service.stop(fleet.unit, fleet.provider, i, reason="test", now=now) for i in ids)
        )
    for instance_id in ids:
        instance, machine = await fleet.instance(instance_id)
        assert instance.status is InstanceStatus.TERMINATED
        assert machine is not None
        assert machine.terminated_at is not None


async def test_a_machine_launched_while_its_instance_was_stopped_is_released(
    fleet: Fleet,
) -> None:
    [instance_id] = await fleet.paid_instances(1)
    fleet.provider.meanwhile = lambda: fleet.owner_stops(instance_id)
    await service.launch(fleet.unit, fleet.provider, instance_id, now=fleet.clock.now())
    instance, machine = await fleet.instance(instance_id)
    assert instance.status is InstanceStatus.TERMINATED
    assert machine is not None
    assert instance.provider_id == machine.provider_id
    assert machine.terminated_at is not None


async def test_a_launch_recorded_while_a_stop_looked_away_is_released_by_the_stop(
    fleet: Fleet,
) -> None:
    """The stop read no machine; the launch recorded one before the stop took the lock."""
    [instance_id] = await fleet.paid_instances(1)
    async with fleet.unit() as db:
        instance = await db.get(Instance, instance_id)
        assert instance is not None
        await service.request_stop(
            db, user_id=instance.user_id, instance_id=instance_id, now=fleet.clock.now()
        )
    units = 0

    @asynccontextmanager
    async def launching_in_between() -> AsyncIterator[AsyncSession]:
        nonlocal units
        units += 1
        if units == 2:  # after the stop's read: the launch (of a stopping instance) lands
            async with fleet.unit() as db:
                locked = await db.get(Instance, instance_id, with_for_update=True)
                assert locked is not None
                assert locked.provider_id is None
                locked.provider_id = await fleet.provider.launch(
                    LaunchSpec(str(instance_id), locked.name, "nvidia-h100", 2, 24, 500, "x")
                )
        async with fleet.unit() as db:
            yield db

    await service.stop(
        launching_in_between, fleet.provider, instance_id, reason="stopped", now=fleet.clock.now()
    )
    instance, machine = await fleet.instance(instance_id)
    assert instance.status is InstanceStatus.TERMINATED
    assert machine is not None
    assert machine.terminated_at is not None


async def test_a_machine_seen_running_after_its_instance_stopped_stays_stopped(
    fleet: Fleet,
) -> None:
    [instance_id] = await fleet.paid_instances(1)
    await service.launch(fleet.unit, fleet.provider, instance_id, now=fleet.clock.now())
    fleet.provider.meanwhile = lambda: fleet.owner_stops(instance_id)
    await service.poll(
        fleet.unit, fleet.provider, instance_id, now=fleet.clock.now(), deadline=DEADLINE
    )
    instance, machine = await fleet.instance(instance_id)
    assert instance.status is InstanceStatus.TERMINATED
    assert instance.started_at is None
    assert instance.expires_at is None
    assert machine is not None
    assert machine.terminated_at is not None
