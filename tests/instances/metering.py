"""What the metering tests share: a pay-as-you-go instance as a launch and a boot leave it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from computebill.instances.models import Billing, Instance, InstanceStatus


async def add_metered(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    rate: int,
    started_at: datetime | None,
    expires_at: datetime | None = None,
) -> Instance:
    """A pay-as-you-go instance at `rate` millicents an hour: running since `started_at`, or
    still provisioning without one. Flushed, not committed."""
    instance_id = uuid.uuid4()
    instance = Instance(
        id=instance_id,
        user_id=user_id,
        billing=Billing.PAY_AS_YOU_GO,
        index=0,
        name=f"h100x1-{instance_id.hex[:6]}",
        gpu_slug="nvidia-h100",
        gpu_name="NVIDIA H100",
        gpu_count=1,
        vcpus=8,
        storage_gb=200,
        region="us-east-1",
        rate_millicents_per_hour=rate,
        status=InstanceStatus.PROVISIONING if started_at is None else InstanceStatus.RUNNING,
        started_at=started_at,
        expires_at=expires_at,
        polls=0,
    )
    db.add(instance)
    await db.flush()
    return instance
