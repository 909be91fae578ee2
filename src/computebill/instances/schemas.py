from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from computebill.instances.models import Instance, InstanceStatus
from computebill.instances.service import Usage


class InstanceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_id: uuid.UUID
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
    remaining_seconds: int
    cost_so_far_cents: int


class InstanceChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: InstanceStatus | None
    to_status: InstanceStatus
    reason: str
    changed_at: datetime


class InstanceDetailOut(InstanceOut):
    history: list[InstanceChangeOut]


class InstanceList(BaseModel):
    instances: list[InstanceOut]


def instance_out(instance: Instance, usage: Usage) -> InstanceOut:
    computed = {
        "remaining_seconds": usage.remaining_seconds,
        "cost_so_far_cents": usage.cost_so_far_cents,
    }
    stored = {
        name: getattr(instance, name) for name in InstanceOut.model_fields if name not in computed
    }
    return InstanceOut.model_validate(stored | computed)
