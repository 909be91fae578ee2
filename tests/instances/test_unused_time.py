"""A fixed-hours instance its owner stops early gives back its unused seconds as credit,
`floor(paid × unused / paid seconds)`, once; what came back is never refunded as well."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.clock import SystemClock
from computebill.credits.models import CreditEntry, EntryKind
from computebill.credits.service import balance
from computebill.instances import service
from computebill.instances.models import Instance, InstanceStatus
from computebill.jobs import take_requested_jobs
from computebill.orders.models import Order
from computebill.payments.refunds import NotRefundable, request_refund
from tests.credits.ledger import add_user
from tests.support.orders import add_paid_order


async def instances_of_a_paid_order(db: AsyncSession, quantity: int) -> list[Instance]:
    now = SystemClock().now()
    user_id = await add_user(db)
    order = await add_paid_order(db, user_id, [("nvidia-h100", quantity, 2)], now=now)
    await service.create_instances(db, order.id, now=now)
    take_requested_jobs(db)
    return list(
        await db.scalars(
            select(Instance).where(Instance.order_id == order.id).order_by(Instance.index)
        )
    )


async def credits_of(db: AsyncSession, instance: Instance) -> list[int]:
    found = await db.scalars(
        select(CreditEntry.amount_millicents).where(
            CreditEntry.instance_id == instance.id, CreditEntry.kind == EntryKind.UNUSED_TIME
        )
    )
    return list(found)


async def test_stopping_early_gives_the_unused_seconds_back_once(db_session: AsyncSession) -> None:
    [instance] = await instances_of_a_paid_order(db_session, 1)
    started = SystemClock().now()
    instance.status = InstanceStatus.RUNNING
    instance.started_at = started
    instance.expires_at = started + timedelta(hours=2)
    await db_session.flush()
    assert (instance.paid_seconds, instance.paid_cents) == (7_200, 1_336)

    stopped_at = started + timedelta(minutes=30, seconds=0.7)  # 1,800 whole seconds used
    for _ in range(2):  # asked twice: the second changes nothing
        await service.request_stop(
            db_session, user_id=instance.user_id, instance_id=instance.id, now=stopped_at
        )
    given = 1_336_000 * (7_200 - 1_800) // 7_200
    assert await credits_of(db_session, instance) == [given]
    assert await balance(db_session, instance.user_id) == given


async def test_a_stop_before_it_ran_gives_everything_back_and_nothing_is_refunded_twice(
    db_session: AsyncSession,
) -> None:
    first, second = await instances_of_a_paid_order(db_session, 2)
    now = SystemClock().now()
    await service.request_stop(db_session, user_id=first.user_id, instance_id=first.id, now=now)
    assert await credits_of(db_session, first) == [1_336_000]
    order = await db_session.get(Order, second.order_id)
    assert order is not None
    order.payment_intent_id = f"pi_{order.id.hex}"

    # The order cost 2 × $13.36; $13.36 came back as credit, so at most $13.36 is refundable.
    no_gateway = cast(Any, None)  # refused before Stripe would be asked
    with pytest.raises(NotRefundable, match="At most 1336 can still be refunded"):
        await request_refund(
            db_session,
            no_gateway,
            order_id=order.id,
            amount_cents=1_337,
            idempotency_key=None,
        )
