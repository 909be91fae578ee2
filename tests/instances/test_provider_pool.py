"""More instance operations at once than the database pool has connections: each holds at most one
connection at a time, and none while the provider (which has its own) is called, so the pool
never runs dry and none waits for a connection that another holds while waiting itself."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.clock import SystemClock
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.instances import service
from computebill.instances.models import Instance, InstanceStatus, SimulatedMachine
from computebill.instances.provider import SimulatedProvider
from computebill.jobs import take_requested_jobs
from tests.support import add_paid_order

POOL_SIZE = 1  # and as many again in overflow: two connections
INSTANCES = 8


async def test_more_operations_at_once_than_pool_connections_all_finish(
    settings: Settings,
) -> None:
    engine = create_engine(settings.model_copy(update={"database_pool_size": POOL_SIZE}))
    sessions = create_sessionmaker(engine)
    clock = SystemClock()
    provider = SimulatedProvider(sessions, clock=clock, boot_seconds=(0, 0))

    @asynccontextmanager
    async def unit() -> AsyncIterator[AsyncSession]:
        """The test plays the worker: the jobs the operations ask for are dropped."""
        async with unit_of_work(sessions) as db:
            yield db
            take_requested_jobs(db)

    try:
        async with unit() as db:
            user = User(
                email=f"pool-{secrets.token_hex(6)}@example.com", password_changed_at=clock.now()
            )
            db.add(user)
            await db.flush()
            order = await add_paid_order(
                db, user.id, [("nvidia-h100", INSTANCES, 1)], now=clock.now()
            )
            await service.create_instances(db, order.id, now=clock.now())
        async with unit() as db:
            ids = list(await db.scalars(select(Instance.id).where(Instance.order_id == order.id)))
        assert len(ids) == INSTANCES > 2 * POOL_SIZE
        # Before, each waited (10 s, then failed) for a second connection while holding one.
        async with asyncio.timeout(30):
            await asyncio.gather(*(service.launch(unit, provider, i, now=clock.now()) for i in ids))
            await asyncio.gather(
                *(
                    service.poll(unit, provider, i, now=clock.now(), deadline=timedelta(minutes=5))
                    for i in ids
                )
            )
            async with unit() as db:
                running = await db.scalars(select(Instance.status).where(Instance.id.in_(ids)))
                assert set(running) == {InstanceStatus.RUNNING}
            await asyncio.gather(
                *(service.stop(unit, provider, i, reason="test", now=clock.now()) for i in ids)
            )
        async with unit() as db:
            found = list(await db.scalars(select(Instance).where(Instance.id.in_(ids))))
            machines = list(
                await db.scalars(
                    select(SimulatedMachine).where(
                        SimulatedMachine.launch_key.in_([str(i) for i in ids])
                    )
                )
            )
        assert {i.status for i in found} == {InstanceStatus.TERMINATED}
        assert len(machines) == INSTANCES
        assert all(m.terminated_at is not None for m in machines)
    finally:
        await engine.dispose()
