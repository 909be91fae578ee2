"""Instances: made for paid order lines, launched, watched until they run, and stopped when the
paid time is up (to the second), early on request, or when the payment is undone."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple, Protocol

import structlog
from sqlalchemy import Select, bindparam, func, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.db import shown_columns
from computebill.errors import NotFound
from computebill.instances.models import Instance, InstanceStatus, InstanceStatusChange
from computebill.instances.provider import ComputeProvider, LaunchSpec, Machine, MachineState
from computebill.jobs import JobName, request_job
from computebill.money import round_half_up
from computebill.orders.models import Order, OrderLine, OrderStatus, OrderStatusChange

log = structlog.get_logger(__name__)


ACTIVE = (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING, InstanceStatus.STOPPING)
# Statuses an instance leaves on its own, without anyone asking (a console keeps watching).
# Orders whose instances are owed: paid, or paid with part of it refunded (a partial refund is
# a credit, not a cancellation).
OWED_INSTANCES = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED})
SETTLING = frozenset({InstanceStatus.PROVISIONING, InstanceStatus.STOPPING})
ALLOWED = {
    InstanceStatus.PROVISIONING: {
        InstanceStatus.RUNNING,
        InstanceStatus.FAILED,
        InstanceStatus.STOPPING,
        InstanceStatus.SUSPENDED,
    },
    InstanceStatus.RUNNING: {InstanceStatus.STOPPING, InstanceStatus.SUSPENDED},
    InstanceStatus.STOPPING: {InstanceStatus.TERMINATED, InstanceStatus.SUSPENDED},
}
MAX_POLL_DELAY = 30.0
EXPIRY_REASON = "paid time is up"


def _transition(
    db: AsyncSession, instance: Instance, to: InstanceStatus, *, reason: str, now: datetime
) -> bool:
    if to not in ALLOWED.get(instance.status, set()):
        return False
    db.add(
        InstanceStatusChange(
            instance_id=instance.id,
            from_status=instance.status,
            to_status=to,
            reason=reason,
            changed_at=now,
        )
    )
    instance.status = to
    return True


def instance_name(gpu_slug: str, gpu_count: int, instance_id: uuid.UUID) -> str:
    """Like `h100x2-3f9a1c` (or `mi300x2-…`): the model without its vendor, the GPU count, a
    short id."""
    model = gpu_slug.split("-", 1)[-1]
    times = "" if model.endswith("x") else "x"
    return f"{model}{times}{gpu_count}-{instance_id.hex[:6]}"


def poll_delay_seconds(polls: int) -> float:
    """1, 2, 4 … seconds between looks at a booting machine, at most 30."""
    return float(min(2**polls, MAX_POLL_DELAY))


async def create_instances(db: AsyncSession, order_id: uuid.UUID, *, now: datetime) -> int:
    """Make every instance a paid order is owed (the unique key makes a rerun a no-op) and ask
    for launches of those not launched yet. Returns how many were asked for."""
    # Locked, so a refund or dispute processed meanwhile (which locks the order too) either
    # comes first and is seen here, or comes after and finds these instances to stop.
    order = await db.get(Order, order_id, with_for_update=True)
    if order is None or order.status not in OWED_INSTANCES:
        return 0
    lines = list(await db.scalars(select(OrderLine).where(OrderLine.order_id == order_id)))
    for line in lines:
        for index in range(line.quantity):
            instance_id = uuid.uuid4()
            created = await db.scalar(
                insert(Instance)
                .values(
                    id=instance_id,
                    user_id=order.user_id,
                    order_id=order.id,
                    order_line_id=line.id,
                    index=index,
                    name=instance_name(line.gpu_slug, line.gpu_count, instance_id),
                    gpu_slug=line.gpu_slug,
                    gpu_name=line.gpu_name,
                    gpu_count=line.gpu_count,
                    vcpus=line.vcpus,
                    storage_gb=line.storage_gb,
                    region=line.region,
                    paid_seconds=line.hours * 3600,
                    paid_cents=line.unit_total_cents,
                    status=InstanceStatus.PROVISIONING,
                    polls=0,
                )
                .on_conflict_do_nothing(constraint="uq_instances_order_line_id_index")
                .returning(Instance.id)
            )
            if created is not None:
                db.add(
                    InstanceStatusChange(
                        instance_id=created,
                        from_status=None,
                        to_status=InstanceStatus.PROVISIONING,
                        reason=f"order {order.id} paid",
                        changed_at=now,
                    )
                )
    waiting = list(
        await db.scalars(
            select(Instance.id).where(
                Instance.order_id == order_id,
                Instance.status == InstanceStatus.PROVISIONING,
                Instance.provider_id.is_(None),
            )
        )
    )
    for instance_id in waiting:
        request_job(db, JobName.LAUNCH_INSTANCE, str(instance_id))
    if order.provisioned_at is None:
        order.provisioned_at = now  # every instance exists: the sweep need not look again
    return len(waiting)


# Provider calls: made between transactions, never under a row lock nor with a connection held
# (docs/architecture.md §5.9). Each operation reads the instance, calls the provider (whose
# calls are idempotent by our ids), then locks the instance and applies the answer only if its
# state still allows it. So these take a way to open units of work (the caller's), not a session.
UnitsOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]


async def _locked(db: AsyncSession, instance_id: uuid.UUID) -> Instance | None:
    return await db.scalar(select(Instance).where(Instance.id == instance_id).with_for_update())


async def _status_and_machine(
    db: AsyncSession, instance_id: uuid.UUID
) -> tuple[InstanceStatus, str | None] | None:
    row = (
        await db.execute(
            select(Instance.status, Instance.provider_id).where(Instance.id == instance_id)
        )
    ).one_or_none()
    return None if row is None else (row.status, row.provider_id)


def _launch_spec(instance: Instance) -> LaunchSpec:
    return LaunchSpec(
        key=str(instance.id),  # a second launch of this instance finds the first
        name=instance.name,
        gpu_slug=instance.gpu_slug,
        gpu_count=instance.gpu_count,
        vcpus=instance.vcpus,
        storage_gb=instance.storage_gb,
        region=instance.region,
    )


async def launch(
    units: UnitsOfWork, provider: ComputeProvider, instance_id: uuid.UUID, *, now: datetime
) -> None:
    """Start the machine of a provisioning instance, then watch it boot."""
    async with units() as db:
        instance = await db.get(Instance, instance_id)
        if instance is None or instance.status is not InstanceStatus.PROVISIONING:
            return
        known, spec = instance.provider_id, _launch_spec(instance)
    provider_id = known or await provider.launch(spec)
    async with units() as db:
        instance = await _locked(db, instance_id)
        if instance is None:
            return
        if instance.provider_id is None:
            instance.provider_id = provider_id
            instance.launch_requested_at = now
        if instance.status is InstanceStatus.PROVISIONING:
            request_job(db, JobName.POLL_INSTANCE, str(instance.id))
            return
    # Stopped while its machine was being launched: the stop may not have known of the machine.
    await provider.terminate(provider_id)


async def poll(
    units: UnitsOfWork,
    provider: ComputeProvider,
    instance_id: uuid.UUID,
    *,
    now: datetime,
    deadline: timedelta,
) -> None:
    """Look at a booting machine: running (the paid time starts now), failed, or look again."""
    async with units() as db:
        found = await _status_and_machine(db, instance_id)
        if found == (InstanceStatus.PROVISIONING, None):
            request_job(db, JobName.LAUNCH_INSTANCE, str(instance_id))
    status, provider_id = found or (None, None)
    if provider_id is None:
        return
    if status is InstanceStatus.FAILED:
        # Its machine is released after the failure is recorded; a retry finishes that.
        await provider.terminate(provider_id)
        return
    if status is not InstanceStatus.PROVISIONING:
        return
    machine = await provider.describe(provider_id)
    async with units() as db:
        failed = await _record_look(db, instance_id, machine, now=now, deadline=deadline)
    if failed:
        await provider.terminate(provider_id)


async def _record_look(
    db: AsyncSession,
    instance_id: uuid.UUID,
    machine: Machine,
    *,
    now: datetime,
    deadline: timedelta,
) -> bool:
    """Apply what the provider said of a booting machine; True when the launch failed (its
    machine is to be released once this is committed)."""
    instance = await _locked(db, instance_id)
    if (
        instance is None
        or instance.status is not InstanceStatus.PROVISIONING
        or instance.provider_id != machine.provider_id
    ):
        return False
    if machine.state is MachineState.RUNNING:
        _transition(db, instance, InstanceStatus.RUNNING, reason="booted", now=now)
        instance.ip_address = machine.ip_address
        instance.ssh_user = machine.ssh_user
        instance.ssh_port = machine.ssh_port
        # Time spent provisioning is not charged: the paid hours start now.
        instance.started_at = now
        instance.expires_at = now + timedelta(seconds=instance.paid_seconds)
        request_job(db, JobName.EXPIRE_INSTANCE, str(instance.id), at=instance.expires_at)
        return False
    started = instance.launch_requested_at or now
    if machine.state is MachineState.BOOTING and now - started < deadline:
        instance.polls += 1
        request_job(
            db,
            JobName.POLL_INSTANCE,
            str(instance.id),
            at=now + timedelta(seconds=poll_delay_seconds(instance.polls)),
        )
        return False
    reason = machine.failure or (
        f"did not boot within {int(deadline.total_seconds())} s"
        if machine.state is MachineState.BOOTING
        else f"the provider reports it {machine.state.value}"
    )
    _transition(db, instance, InstanceStatus.FAILED, reason=reason[:200], now=now)
    instance.failure_reason = reason[:500]
    log.warning("instance_launch_failed", instance_id=str(instance.id), reason=reason)
    return True


async def stop(
    units: UnitsOfWork,
    provider: ComputeProvider,
    instance_id: uuid.UUID,
    *,
    reason: str,
    now: datetime,
    final: InstanceStatus = InstanceStatus.TERMINATED,
) -> None:
    """Stop the machine and end the instance (`final` is terminated, or suspended)."""
    async with units() as db:
        found = await _status_and_machine(db, instance_id)
    if found is None or found[0] not in ACTIVE:
        return
    stopped = found[1]
    if stopped is not None:
        await provider.terminate(stopped)
    async with units() as db:
        instance = await _locked(db, instance_id)
        if instance is None or instance.status not in ACTIVE:
            return
        if final is InstanceStatus.TERMINATED:
            _transition(db, instance, InstanceStatus.STOPPING, reason=reason, now=now)
        _transition(db, instance, final, reason=reason, now=now)
        instance.terminated_at = now
        launched_meanwhile = instance.provider_id
    if launched_meanwhile not in (None, stopped):
        await provider.terminate(launched_meanwhile)


async def expire(
    units: UnitsOfWork, provider: ComputeProvider, instance_id: uuid.UUID, *, now: datetime
) -> None:
    """Stop an instance whose paid time is up; early (a clock-skewed job) it does nothing."""
    async with units() as db:
        expires_at = await db.scalar(select(Instance.expires_at).where(Instance.id == instance_id))
    if expires_at is not None and expires_at <= now:
        await stop(units, provider, instance_id, reason=EXPIRY_REASON, now=now)


async def request_stop(
    db: AsyncSession, *, user_id: uuid.UUID, instance_id: uuid.UUID, now: datetime
) -> Instance:
    """The owner ends an instance early (idempotent); 404 for anyone else's."""
    instance = await db.scalar(
        select(Instance)
        .where(Instance.id == instance_id, Instance.user_id == user_id)
        .with_for_update()
    )
    if instance is None:
        raise NotFound("No such instance.")
    if _transition(db, instance, InstanceStatus.STOPPING, reason="stopped by its owner", now=now):
        request_job(db, JobName.STOP_INSTANCE, str(instance.id), "stopped by its owner")
        await db.flush()  # the list read next (the console's) reads rows, not the session
    return instance


async def stop_order_instances(
    db: AsyncSession, order_id: uuid.UUID, *, reason: str, suspend: bool
) -> int:
    """After a full refund (terminate) or a dispute (suspend): stop every live instance."""
    ids = list(
        await db.scalars(
            select(Instance.id).where(Instance.order_id == order_id, Instance.status.in_(ACTIVE))
        )
    )
    job = JobName.SUSPEND_INSTANCE if suspend else JobName.STOP_INSTANCE
    for instance_id in ids:
        request_job(db, job, str(instance_id), reason)
    return len(ids)


# Sweeps: what a lost job would have left undone --------------------------------------------------


def orders_awaiting_instances() -> Select[uuid.UUID]:
    """Orders owed instances that are not all made yet. `provisioned_at` is set once they are, so
    this reads a few rows of a partial index however many orders there are."""
    return select(Order.id).where(
        Order.status.in_(OWED_INSTANCES),
        Order.paid_at.is_not(None),  # the partial index's condition, for the planner to match
        Order.provisioned_at.is_(None),
    )


def orders_awaiting_payment(*, now: datetime) -> Select[uuid.UUID]:
    """Pending orders whose checkout is still open: their payment may be being confirmed (the
    customer can reach the success page before Stripe's webhook)."""
    return select(Order.id).where(
        Order.status == OrderStatus.PENDING,
        Order.checkout_session_id.is_not(None),
        Order.checkout_expires_at > now,
    )


class Expected(StrEnum):
    """Why a customer's console expects instances that are not there yet."""

    INSTANCES = "instances"  # a paid order awaits some (a job makes them moments after payment)
    PAYMENT = "payment"  # a checkout is open: once it is paid, its instances follow


async def instances_expected(
    db: AsyncSession, *, user_id: uuid.UUID, now: datetime
) -> Expected | None:
    """Whether (and why) more instances of this user are on their way."""
    paid, paying = (
        await db.execute(
            select(
                orders_awaiting_instances().where(Order.user_id == user_id).exists(),
                orders_awaiting_payment(now=now).where(Order.user_id == user_id).exists(),
            )
        )
    ).one()
    if paid:
        return Expected.INSTANCES
    return Expected.PAYMENT if paying else None


async def sweep(db: AsyncSession, *, now: datetime, stale_after: timedelta) -> dict[str, int]:
    overdue = list(
        await db.scalars(
            select(Instance.id)
            .where(Instance.status == InstanceStatus.RUNNING, Instance.expires_at <= now)
            .limit(500)
        )
    )
    for instance_id in overdue:
        request_job(db, JobName.EXPIRE_INSTANCE, str(instance_id))
    stuck = (
        await db.execute(
            select(Instance.id, Instance.status)
            .where(
                Instance.status.in_((InstanceStatus.PROVISIONING, InstanceStatus.STOPPING)),
                Instance.updated_at < now - stale_after,
            )
            .limit(500)
        )
    ).all()
    for instance_id, status in stuck:
        if status is InstanceStatus.PROVISIONING:
            request_job(db, JobName.POLL_INSTANCE, str(instance_id))
        else:
            request_job(db, JobName.STOP_INSTANCE, str(instance_id), "stopping did not finish")
    short = list(
        await db.scalars(
            orders_awaiting_instances()
            .where(Order.paid_at < now - stale_after)
            .order_by(Order.paid_at)
            .limit(200)
        )
    )
    for order_id in short:
        request_job(db, JobName.PROVISION_ORDER, str(order_id))
    # Instances still live after their order was refunded in full or disputed: the stop jobs
    # the payment event asked for were lost.
    # Per live instance (few, found by status), its order's changes (by order): a lateral
    # aggregate, which the planner cannot turn into a read of every status change ever made.
    undone = (
        select(
            func.count().label("changes"),
            func.bool_or(OrderStatusChange.to_status == OrderStatus.DISPUTED).label("disputed"),
        )
        .where(
            OrderStatusChange.order_id == Instance.order_id,
            OrderStatusChange.to_status.in_((OrderStatus.REFUNDED, OrderStatus.DISPUTED)),
            OrderStatusChange.changed_at < now - stale_after,
        )
        .lateral()
    )
    unstopped = (
        await db.execute(
            select(Instance.id, undone.c.disputed)
            .join(undone, true())
            .where(
                Instance.status.in_((InstanceStatus.PROVISIONING, InstanceStatus.RUNNING)),
                undone.c.changes > 0,
            )
            .limit(500)
        )
    ).all()
    for instance_id, disputed in unstopped:
        if disputed:
            request_job(db, JobName.SUSPEND_INSTANCE, str(instance_id), "payment disputed")
        else:
            request_job(db, JobName.STOP_INSTANCE, str(instance_id), "order refunded")
    return {
        "overdue": len(overdue),
        "stuck": len(stuck),
        "unprovisioned_orders": len(short),
        "unstopped": len(unstopped),
    }


# Reading ------------------------------------------------------------------------------------------


class InstanceFacts(Protocol):
    """What the readers below use of an instance: a loaded `Instance`, or a `ListedInstance`."""

    @property
    def status(self) -> InstanceStatus: ...

    @property
    def paid_seconds(self) -> int: ...

    @property
    def paid_cents(self) -> int: ...

    @property
    def started_at(self) -> datetime | None: ...

    @property
    def expires_at(self) -> datetime | None: ...

    @property
    def terminated_at(self) -> datetime | None: ...

    @property
    def ip_address(self) -> str | None: ...

    @property
    def ssh_user(self) -> str | None: ...

    @property
    def ssh_port(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Usage:
    remaining_seconds: int
    cost_so_far_cents: int
    used_seconds: int = 0


def usage(instance: InstanceFacts, *, now: datetime) -> Usage:
    """Time left of what was paid, and how much of the price has been used."""
    if instance.started_at is None or instance.expires_at is None:
        return Usage(remaining_seconds=instance.paid_seconds, cost_so_far_cents=0)
    end = min(now, instance.terminated_at or now, instance.expires_at)
    used = max(int((end - instance.started_at).total_seconds()), 0)
    remaining = 0 if instance.terminated_at else max(instance.paid_seconds - used, 0)
    cost = round_half_up(instance.paid_cents * used, instance.paid_seconds)
    return Usage(
        remaining_seconds=remaining,
        cost_so_far_cents=min(cost, instance.paid_cents),
        used_seconds=used,
    )


def ssh_command(instance: InstanceFacts) -> str | None:
    """How to log in to a running instance (`ssh ubuntu@203.0.113.7`); None while it cannot be
    reached."""
    if (
        instance.status is not InstanceStatus.RUNNING
        or instance.ip_address is None
        or instance.ssh_user is None
    ):
        return None
    port = "" if instance.ssh_port in (None, 22) else f"-p {instance.ssh_port} "
    return f"ssh {port}{instance.ssh_user}@{instance.ip_address}"


class ListedInstance(NamedTuple):
    """An instance as lists show it (the API's `InstanceOut`, the console, an order's page),
    read without the ORM; its ids as text."""

    id: str
    order_id: str
    name: str
    gpu_slug: str
    gpu_name: str
    gpu_count: int
    vcpus: int
    storage_gb: int
    region: str
    status: InstanceStatus
    provider_id: str | None
    ip_address: str | None
    ssh_user: str | None
    ssh_port: int | None
    started_at: datetime | None
    expires_at: datetime | None
    terminated_at: datetime | None
    failure_reason: str | None
    paid_seconds: int
    paid_cents: int


# The instance lists, newest first: built once with bound parameters (docs/architecture.md §3,
# reads on hot paths).
_instances = Instance.__table__.c
_LISTED = select(*shown_columns(Instance.__table__, ListedInstance._fields)).where(
    _instances.user_id == bindparam("user_id")
)
_USERS_INSTANCES = _LISTED.order_by(_instances.created_at.desc(), _instances.index)
_ORDERS_INSTANCES = _LISTED.where(_instances.order_id == bindparam("order_id")).order_by(
    _instances.created_at.desc(), _instances.index
)


async def list_instances(
    db: AsyncConnection, *, user_id: uuid.UUID, order_id: uuid.UUID | None = None
) -> list[ListedInstance]:
    """The user's instances (of one order, if given), newest first: one statement, read without
    the ORM (a list only shows)."""
    if order_id is None:
        found = await db.execute(_USERS_INSTANCES, {"user_id": user_id})
    else:
        found = await db.execute(_ORDERS_INSTANCES, {"user_id": user_id, "order_id": order_id})
    return [ListedInstance._make(row) for row in found]


async def get_instance(
    db: AsyncSession, *, user_id: uuid.UUID, instance_id: uuid.UUID
) -> tuple[Instance, list[InstanceStatusChange]]:
    instance = await db.scalar(
        select(Instance).where(Instance.id == instance_id, Instance.user_id == user_id)
    )
    if instance is None:
        raise NotFound("No such instance.")
    history = await db.scalars(
        select(InstanceStatusChange)
        .where(InstanceStatusChange.instance_id == instance.id)
        .order_by(InstanceStatusChange.id)
    )
    return instance, list(history)
