"""Orders written straight into the database, as fulfilment leaves them, and read back."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.catalog.models import GpuModel
from computebill.devserver.scratch import Sessions
from computebill.orders.models import Order, OrderLine, OrderStatus

PaidLine = tuple[str, int, int]  # GPU slug, quantity, hours


async def add_paid_order(
    db: AsyncSession, user_id: uuid.UUID, lines: Sequence[PaidLine], *, now: datetime
) -> Order:
    """A paid order of `lines`, as fulfilment leaves one (its instances not made yet): each line
    2 GPUs, 24 vCPUs and 500 GB at $6.68 an hour. Flushed, not committed."""
    order = Order(
        user_id=user_id,
        status=OrderStatus.PAID,
        currency="usd",
        total_cents=0,
        refunded_cents=0,
        cart_fingerprint="test",
        paid_at=now,
    )
    db.add(order)
    await db.flush()
    for position, (slug, quantity, hours) in enumerate(lines):
        model = await db.scalar(select(GpuModel).where(GpuModel.slug == slug))
        assert model is not None, slug
        unit_total = 668 * hours
        order.total_cents += unit_total * quantity
        db.add(
            OrderLine(
                order_id=order.id,
                position=position,
                gpu_model_id=model.id,
                gpu_slug=slug,
                gpu_name=model.name,
                gpu_count=2,
                vcpus=24,
                storage_gb=500,
                hours=hours,
                region="us-east-1",
                quantity=quantity,
                gpu_hour_cents=249,
                vcpu_hour_millicents=5000,
                storage_gb_hour_millicents=100,
                unit_total_cents=unit_total,
                line_total_cents=unit_total * quantity,
            )
        )
    await db.flush()
    return order


async def order_row(db: Sessions, order_id: str) -> Order:
    async with db() as session:
        order = await session.get(Order, uuid.UUID(order_id))
        assert order is not None, order_id
        return order
