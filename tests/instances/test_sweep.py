"""The instance sweep recovers stop and suspend jobs that were lost (e.g. with Redis): instances
still live long after their order was refunded in full or disputed are stopped or suspended."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.instances import service
from computebill.instances.models import Instance, InstanceStatus
from computebill.jobs import JobName, take_requested_jobs
from computebill.orders.models import Order, OrderStatus, OrderStatusChange
from tests.instances.test_lifecycle import paid_order
from tests.support.http import Api

STALE = timedelta(seconds=60)


async def _running_order_that_became(
    settings: Settings, user_id: str, status: OrderStatus, *, at: datetime
) -> list[uuid.UUID]:
    """A paid order with two running instances, then moved to `status` at `at` (whose stop
    or suspend jobs never ran)."""
    order_id = await paid_order(settings, user_id, ("nvidia-h100", 2, 3))
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            await service.create_instances(db, order_id, now=at)
            take_requested_jobs(db)  # the launches: not what this test is about
            found = await db.scalars(select(Instance).where(Instance.order_id == order_id))
            instances = list(found)
            for instance in instances:
                instance.status = InstanceStatus.RUNNING
            order = await db.get(Order, order_id)
            assert order is not None
            order.status = status
            db.add(
                OrderStatusChange(
                    order_id=order_id,
                    from_status=OrderStatus.PAID,
                    to_status=status,
                    reason="test",
                    changed_at=at,
                )
            )
            return [instance.id for instance in instances]
    finally:
        await engine.dispose()


async def _sweep(settings: Settings, now: datetime) -> list[tuple[str, tuple[object, ...]]]:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            await service.sweep(db, now=now, stale_after=STALE)
            return [(request.name, request.args) for request in take_requested_jobs(db)]
    finally:
        await engine.dispose()


async def test_lost_stops_after_a_refund_or_a_dispute_are_asked_for_again(
    api: Api, email: str, settings: Settings
) -> None:
    user = (await api.sign_up(email))["user"]["id"]
    now = datetime.now(UTC)
    refunded = await _running_order_that_became(
        settings, user, OrderStatus.REFUNDED, at=now - 2 * STALE
    )
    disputed = await _running_order_that_became(
        settings, user, OrderStatus.DISPUTED, at=now - 2 * STALE
    )
    just_refunded = await _running_order_that_became(settings, user, OrderStatus.REFUNDED, at=now)

    requested = await _sweep(settings, now)
    mine = {str(i) for i in refunded + disputed + just_refunded}
    ours = {args[0]: name for name, args in requested if args and args[0] in mine}
    assert ours == {
        **{str(i): JobName.STOP_INSTANCE for i in refunded},
        **{str(i): JobName.SUSPEND_INSTANCE for i in disputed},
    }  # the fresh refund's own stop jobs are still in flight: left alone
