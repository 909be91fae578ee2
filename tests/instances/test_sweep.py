"""The instance sweep recovers stop and suspend jobs that were lost (e.g. with Redis): instances
still live long after their order was refunded in full or disputed are stopped or suspended."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.instances import service
from computebill.instances.models import Instance, InstanceStatus
from computebill.jobs import JobName, take_requested_jobs
from computebill.orders.models import OrderStatus, OrderStatusChange
from tests.support.orders import add_paid_order

STALE = timedelta(seconds=60)


async def _user(db: AsyncSession, email: str) -> User:
    user = User(
        email=email, password_changed_at=datetime.now(UTC), email_verified_at=datetime.now(UTC)
    )
    db.add(user)
    await db.flush()
    return user


async def _running_order_that_became(
    db: AsyncSession, user_id: uuid.UUID, status: OrderStatus, *, at: datetime
) -> list[uuid.UUID]:
    """A paid order with two running instances, then moved to `status` at `at` (whose stop
    or suspend jobs never ran)."""
    order = await add_paid_order(db, user_id, [("nvidia-h100", 2, 3)], now=datetime.now(UTC))
    await service.create_instances(db, order.id, now=at)
    take_requested_jobs(db)  # the launches: not what this test is about
    instances = list(await db.scalars(select(Instance).where(Instance.order_id == order.id)))
    for instance in instances:
        instance.status = InstanceStatus.RUNNING
    order.status = status
    db.add(
        OrderStatusChange(
            order_id=order.id,
            from_status=OrderStatus.PAID,
            to_status=status,
            reason="test",
            changed_at=at,
        )
    )
    await db.flush()
    return [instance.id for instance in instances]


async def test_lost_stops_after_a_refund_or_a_dispute_are_asked_for_again(
    db_session: AsyncSession, email: str
) -> None:
    user = await _user(db_session, email)
    now = datetime.now(UTC)
    refunded = await _running_order_that_became(
        db_session, user.id, OrderStatus.REFUNDED, at=now - 2 * STALE
    )
    disputed = await _running_order_that_became(
        db_session, user.id, OrderStatus.DISPUTED, at=now - 2 * STALE
    )
    just_refunded = await _running_order_that_became(
        db_session, user.id, OrderStatus.REFUNDED, at=now
    )

    requested = await _swept(db_session, now)
    mine = {str(i) for i in refunded + disputed + just_refunded}
    ours = {args[0]: name for name, args in requested if args and args[0] in mine}
    assert ours == {
        **{str(i): JobName.STOP_INSTANCE for i in refunded},
        **{str(i): JobName.SUSPEND_INSTANCE for i in disputed},
    }  # the fresh refund's own stop jobs are still in flight: left alone


async def _swept(db: AsyncSession, now: datetime) -> list[tuple[str, tuple[object, ...]]]:
    await service.sweep(db, now=now, stale_after=STALE)
    return [(request.name, request.args) for request in take_requested_jobs(db)]


async def test_an_order_short_of_instances_is_provisioned_again_until_it_has_them_all(
    db_session: AsyncSession, email: str
) -> None:
    user = await _user(db_session, email)
    now = datetime.now(UTC)
    order = await add_paid_order(db_session, user.id, [("nvidia-h100", 2, 3)], now=now)
    later = now + 2 * STALE
    provision = (JobName.PROVISION_ORDER, (str(order.id),))
    assert provision in await _swept(db_session, later)

    await service.create_instances(db_session, order.id, now=later)
    await db_session.flush()  # what the job's commit does
    take_requested_jobs(db_session)
    assert order.provisioned_at == later
    assert provision not in await _swept(db_session, later)


async def test_a_deleted_accounts_live_instances_are_stopped(
    db_session: AsyncSession, email: str
) -> None:
    now = datetime.now(UTC)
    gone = await _user(db_session, email)
    kept = await _user(db_session, f"kept-{email}")
    gone_ids = await _running_order_that_became(db_session, gone.id, OrderStatus.PAID, at=now)
    kept_ids = await _running_order_that_became(db_session, kept.id, OrderStatus.PAID, at=now)
    gone.deleted_at = now
    await db_session.flush()

    requested = await _swept(db_session, now)
    mine = {str(i) for i in gone_ids + kept_ids}
    ours = {args[0]: (name, args[1:]) for name, args in requested if args and args[0] in mine}
    assert ours == {
        str(i): (JobName.STOP_INSTANCE, (service.ACCOUNT_DELETED_REASON,)) for i in gone_ids
    }
