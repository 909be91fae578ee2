"""What the state-machine tests share: an event loop of their own (Hypothesis drives rules
synchronously), a private database, a job queue the test runs, repeats and loses at will, the
instance jobs run through the services with a movable clock, and the allowed transitions written
down from docs/architecture.md §4 (and the services' tables), independently of the code under
test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.devserver.scratch import Sessions
from computebill.instances import service as instances
from computebill.instances.models import (
    Instance,
    InstanceStatus,
    InstanceStatusChange,
    SimulatedMachine,
)
from computebill.instances.provider import SimulatedProvider
from computebill.jobs import JobName, JobRequest
from computebill.orders.models import Order, OrderLine, OrderStatus
from tests.support.clock import MovableClock
from tests.support.database import own_database

T = TypeVar("T")

# docs/architecture.md §4, as the services implement it (a second partial refund is a move of its
# own; a dispute is settled only by a full refund).
ORDER_FLOW: dict[OrderStatus | None, frozenset[OrderStatus]] = {
    None: frozenset({OrderStatus.PENDING}),
    OrderStatus.PENDING: frozenset(
        {
            OrderStatus.PAID,
            OrderStatus.EXPIRED,
            OrderStatus.CANCELED,
            OrderStatus.PAYMENT_FAILED,
        }
    ),
    OrderStatus.PAID: frozenset(
        {OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED, OrderStatus.DISPUTED}
    ),
    OrderStatus.PARTIALLY_REFUNDED: frozenset(
        {OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED, OrderStatus.DISPUTED}
    ),
    OrderStatus.DISPUTED: frozenset({OrderStatus.REFUNDED}),
}
INSTANCE_FLOW: dict[InstanceStatus | None, frozenset[InstanceStatus]] = {
    None: frozenset({InstanceStatus.PROVISIONING}),
    InstanceStatus.PROVISIONING: frozenset(
        {
            InstanceStatus.RUNNING,
            InstanceStatus.FAILED,
            InstanceStatus.STOPPING,
            InstanceStatus.SUSPENDED,
        }
    ),
    InstanceStatus.RUNNING: frozenset({InstanceStatus.STOPPING, InstanceStatus.SUSPENDED}),
    InstanceStatus.STOPPING: frozenset({InstanceStatus.TERMINATED, InstanceStatus.SUSPENDED}),
}
LIVE = frozenset({InstanceStatus.PROVISIONING, InstanceStatus.RUNNING, InstanceStatus.STOPPING})
ENDED = frozenset({InstanceStatus.TERMINATED, InstanceStatus.FAILED, InstanceStatus.SUSPENDED})
STALE_AFTER = timedelta(seconds=60)  # what the worker's instance sweep uses (at least 60 s)
PROVISION_DEADLINE = timedelta(seconds=600)
BOOT_SECONDS = (0.0, 20.0)


@dataclass
class Loop:
    """An event loop of the test's own, on which every rule's coroutine runs to completion."""

    runner: asyncio.Runner

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)


@dataclass
class Database:
    loop: Loop
    settings: Settings
    sessions: Sessions


@contextmanager
def private_database(settings: Settings, server_url: str) -> Iterator[Database]:
    """A fresh migrated and seeded database and Redis namespace, out of reach of any worker or
    sweep another test started, with sessions on the test's own loop."""
    # A loop factory keeps the runner from installing its loop as the thread's current one.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        loop = Loop(runner)
        database = own_database(settings, server_url)
        own = loop.run(database.__aenter__())
        engine = create_engine(own)
        try:
            yield Database(loop, own, create_sessionmaker(engine))
        finally:
            loop.run(engine.dispose())
            loop.run(database.__aexit__(None, None, None))


@dataclass
class JobPool:
    """The queue as the test sees it: jobs the services asked for (sent after their commit) wait
    here until a rule runs one, runs one and keeps it (a duplicate delivery), or loses one."""

    waiting: list[JobRequest] = field(default_factory=list)

    async def publish(self, requests: list[JobRequest]) -> None:
        self.waiting.extend(requests)

    async def queued(self) -> int:
        return len(self.waiting)

    def take(self, choice: int, *, keep: bool) -> JobRequest:
        job = self.waiting[choice % len(self.waiting)]
        if not keep:
            self.waiting.remove(job)
        return job

    def keep_only(self, wanted: set[str]) -> None:
        """Drop jobs about other examples' rows (the sweeps look at the whole database)."""
        self.waiting = [job for job in self.waiting if str(job.args[0]) in wanted]


INSTANCE_JOBS = frozenset(
    {
        JobName.LAUNCH_INSTANCE,
        JobName.POLL_INSTANCE,
        JobName.EXPIRE_INSTANCE,
        JobName.STOP_INSTANCE,
        JobName.SUSPEND_INSTANCE,
    }
)


async def run_instance_job(
    sessions: Sessions,
    pool: JobPool,
    provider: SimulatedProvider,
    clock: MovableClock,
    job: JobRequest,
) -> None:
    """What the worker's instance jobs do, with the test's clock."""
    instance_id = uuid.UUID(str(job.args[0]))
    now = clock.now()
    units = partial(unit_of_work, sessions, pool)
    if job.name == JobName.LAUNCH_INSTANCE:
        await instances.launch(units, provider, instance_id, now=now)
    elif job.name == JobName.POLL_INSTANCE:
        await instances.poll(units, provider, instance_id, now=now, deadline=PROVISION_DEADLINE)
    elif job.name == JobName.EXPIRE_INSTANCE:
        await instances.expire(units, provider, instance_id, now=now)
    elif job.name in (JobName.STOP_INSTANCE, JobName.SUSPEND_INSTANCE):
        final = (
            InstanceStatus.SUSPENDED
            if job.name == JobName.SUSPEND_INSTANCE
            else InstanceStatus.TERMINATED
        )
        await instances.stop(
            units, provider, instance_id, reason=str(job.args[1]), now=now, final=final
        )
    else:
        raise AssertionError(f"not an instance job: {job}")


def assert_history(
    what: str,
    changes: Sequence[tuple[Any, Any]],
    flow: dict[Any, frozenset[Any]],
    current: Any,
    seen_before: Sequence[tuple[Any, Any]],
) -> None:
    """`changes` (from, to) form one chain of allowed moves ending at `current`, and extend what
    was seen at the previous step (history is never rewritten)."""
    assert changes, f"{what} has no history"
    assert list(changes[: len(seen_before)]) == list(seen_before), (what, seen_before, changes)
    previous: Any = None
    for moved_from, moved_to in changes:
        assert moved_from == previous, f"{what}: {moved_from} recorded after {previous}: {changes}"
        assert moved_to in flow.get(moved_from, frozenset()), (
            f"{what}: {moved_from} -> {moved_to} is not an allowed move: {changes}"
        )
        previous = moved_to
    assert previous == current, f"{what} is {current} but its history ends at {previous}"


@dataclass
class InstanceView:
    instance: Instance
    history: list[tuple[InstanceStatus | None, InstanceStatus]]
    machine: SimulatedMachine | None


async def instances_of(db: AsyncSession, order_id: uuid.UUID) -> list[InstanceView]:
    rows = list(await db.scalars(select(Instance).where(Instance.order_id == order_id)))
    ids = [row.id for row in rows]
    changes = list(
        await db.scalars(
            select(InstanceStatusChange)
            .where(InstanceStatusChange.instance_id.in_(ids))
            .order_by(InstanceStatusChange.id)
        )
    )
    machines = {
        machine.launch_key: machine
        for machine in await db.scalars(
            select(SimulatedMachine).where(SimulatedMachine.launch_key.in_([str(i) for i in ids]))
        )
    }
    return [
        InstanceView(
            row,
            [(c.from_status, c.to_status) for c in changes if c.instance_id == row.id],
            machines.get(str(row.id)),
        )
        for row in rows
    ]


def assert_instances(
    views: list[InstanceView],
    lines: list[OrderLine],
    seen: dict[uuid.UUID, list[tuple[InstanceStatus | None, InstanceStatus]]],
    *,
    provisioned_while_paid: bool,
) -> None:
    """Each instance moved only forward; no line has more (or, once provisioning ran for the paid
    order, fewer) instances than were bought; machines live exactly as long as their instance."""
    quantities = {line.id: line.quantity for line in lines}
    for line_id, quantity in quantities.items():
        indices = sorted(v.instance.index for v in views if v.instance.order_line_id == line_id)
        assert len(indices) == len(set(indices)), indices
        assert all(0 <= i < quantity for i in indices), (indices, quantity)
        if provisioned_while_paid:
            assert indices == list(range(quantity)), (indices, quantity)
    for view in views:
        instance = view.instance
        assert instance.order_line_id in quantities
        assert_history(
            f"instance {instance.id}",
            view.history,
            INSTANCE_FLOW,
            instance.status,
            seen.get(instance.id, []),
        )
        seen[instance.id] = view.history
        if InstanceStatus.RUNNING in (to for _, to in view.history):
            assert instance.started_at is not None
            assert instance.expires_at is not None
            assert instance.paid_seconds is not None
            assert instance.expires_at - instance.started_at == timedelta(
                seconds=instance.paid_seconds
            )
            assert instance.ip_address is not None
        if instance.status in ENDED and instance.status is not InstanceStatus.FAILED:
            assert instance.terminated_at is not None
        if view.machine is not None:
            assert instance.provider_id == view.machine.provider_id
            if instance.status in ENDED:
                assert view.machine.terminated_at is not None, f"{instance.status} leaks a machine"


async def order_of(db: AsyncSession, order_id: uuid.UUID) -> tuple[Order, list[OrderLine]]:
    order = await db.get(Order, order_id, populate_existing=True)
    assert order is not None
    lines = list(await db.scalars(select(OrderLine).where(OrderLine.order_id == order_id)))
    return order, lines


def run_machine(machine: type[RuleBasedStateMachine], *, max_examples: int, steps: int) -> None:
    """Run a state machine against the real database: no deadline (a step is real I/O), and no
    example database (each example's rows are new)."""
    run_state_machine_as_test(
        machine,
        settings=hypothesis_settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        ),
    )
