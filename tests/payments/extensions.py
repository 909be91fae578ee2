"""A running fixed-hours machine to extend, written straight into the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.instances import service as instances
from computebill.instances.models import Instance, InstanceStatus
from computebill.jobs import take_requested_jobs
from tests.support.orders import add_paid_order

HOURLY_CENTS = 668  # 2 × H100 at $2.49, 24 vCPUs, 500 GB: the seeded catalog's rate now
# The real time (to the minute), not a fixed date: the session's platform worker shares the
# database, and its sweeps would stop a machine whose paid hours ended in the real past.
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


async def running_instance(db: AsyncSession, user_id: uuid.UUID, *, hours: int = 2) -> Instance:
    """A fixed-hours H100 instance of a paid order, running since NOW for `hours` paid hours."""
    order = await add_paid_order(db, user_id, [("nvidia-h100", 1, hours)], now=NOW)
    await instances.create_instances(db, order.id, now=NOW)
    take_requested_jobs(db)
    instance = await db.scalar(select(Instance).where(Instance.order_id == order.id))
    assert instance is not None
    instance.status = InstanceStatus.RUNNING
    instance.started_at = NOW
    instance.expires_at = NOW + timedelta(hours=hours)
    await db.flush()
    return instance
