from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from computebill.instances.models import InstanceStatus
from computebill.instances.service import InstanceFacts, Usage


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


_COMPUTED = ("remaining_seconds", "cost_so_far_cents")
_STORED = tuple(name for name in InstanceOut.model_fields if name not in _COMPUTED)


def instance_fields(instance: InstanceFacts, usage: Usage) -> dict[str, Any]:
    """An instance as the API shows it: `InstanceOut`'s fields, in its order, from a loaded
    `Instance` or a row of `list_instances`. The lists serialize this as it is; the other
    answers validate it into an `InstanceOut`."""
    fields = {name: getattr(instance, name) for name in _STORED}
    fields["remaining_seconds"] = usage.remaining_seconds
    fields["cost_so_far_cents"] = usage.cost_so_far_cents
    return fields


def instance_out(instance: InstanceFacts, usage: Usage) -> InstanceOut:
    return InstanceOut.model_validate(instance_fields(instance, usage))
