"""What the metering tests share: a pay-as-you-go instance as a launch and a boot leave it, and
the check that its usage entries cover its settled run exactly once."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.credits.models import CreditEntry, EntryKind
from computebill.instances.metering import owed_millicents
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


async def assert_usage_covers(db: AsyncSession, instance_id: uuid.UUID) -> int:
    """The instance's usage entries are one contiguous cover of its settled run: keys
    `usage:<id>:<through>` strictly increasing, the last at `billed_through_seconds`, and their
    total exactly `floor(rate × billed_through_seconds / 3600)`. Answers that total."""
    instance = await db.get(Instance, instance_id, populate_existing=True)
    assert instance is not None
    assert instance.rate_millicents_per_hour is not None
    rows = (
        await db.execute(
            select(CreditEntry.idempotency_key, CreditEntry.amount_millicents)
            .where(CreditEntry.instance_id == instance_id, CreditEntry.kind == EntryKind.USAGE)
            .order_by(CreditEntry.position)
        )
    ).all()
    prefix = f"usage:{instance_id}:"
    throughs = []
    for key, amount in rows:
        assert key.startswith(prefix), key
        assert amount < 0, (key, amount)
        throughs.append(int(key.removeprefix(prefix)))
    assert throughs == sorted(set(throughs)), f"{instance_id} charged out of order: {throughs}"
    assert throughs[-1:] in ([], [instance.billed_through_seconds]), (
        throughs,
        instance.billed_through_seconds,
    )
    charged = -sum(amount for _, amount in rows)
    owed = owed_millicents(instance.rate_millicents_per_hour, instance.billed_through_seconds)
    assert charged == owed, (instance_id, charged, owed, instance.billed_through_seconds)
    return charged
