from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from computebill.catalog.schemas import ImageVersion
from computebill.instances.models import Billing, InstanceStatus
from computebill.instances.service import InstanceFacts, ListedInstance, Usage
from computebill.sshkeys.service import MAX_KEYS_PER_ACCOUNT


class InstanceImageOut(BaseModel):
    """What an instance's machine is installed with, as the image was when it was made."""

    slug: str
    name: str
    versions: list[ImageVersion]


class InstanceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    billing: Billing
    order_id: uuid.UUID | None = Field(
        description="The order that paid for it; None: pay as you go"
    )
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
    expires_at: datetime | None = Field(
        description="When it stops on its own: the paid time's end, or the safety stop"
    )
    run_ended_at: datetime | None = Field(description="When it stopped running: billing ends")
    terminated_at: datetime | None
    failure_reason: str | None
    paid_seconds: int | None = Field(description="Fixed hours: the time bought")
    paid_cents: int | None = Field(description="Fixed hours: what the time cost")
    rate_millicents_per_hour: int | None = Field(description="Pay as you go: the rate per hour")
    max_hours: int | None = Field(description="Pay as you go: the safety stop, if any")
    remaining_seconds: int | None = Field(
        description="Time left before it stops on its own; None: no end is set"
    )
    cost_so_far_cents: int
    cost_so_far_millicents: int = Field(
        description="Pay as you go: exactly what its run is charged, settled or not"
    )
    image: InstanceImageOut | None = Field(
        description="The machine image it is installed with; None: made before images"
    )


class OperatorInstanceOut(InstanceOut):
    """An instance as operators list it: whose it is and when it was made, too."""

    user_id: uuid.UUID
    created_at: datetime


class OperatorInstancePage(BaseModel):
    instances: list[OperatorInstanceOut]
    next_cursor: str | None


class PayAsYouGoIn(BaseModel):
    """A pay-as-you-go launch: the configuration, priced by the server at its rate now."""

    model_config = ConfigDict(extra="ignore")

    gpu: str = Field(max_length=40, description="GPU model slug, e.g. nvidia-h100")
    gpu_count: int
    vcpus: int
    storage_gb: int
    region: str | None = Field(default=None, max_length=40)
    max_hours: int | None = Field(
        default=None, description="A safety stop: it stops after running this many hours"
    )
    ssh_key_ids: list[uuid.UUID] | None = Field(
        default=None,
        max_length=MAX_KEYS_PER_ACCOUNT,
        description="The account's SSH keys to put on the machine; omitted: all of them",
    )
    image: str | None = Field(
        default=None,
        max_length=40,
        description="A machine image's slug (GET /api/v1/images); omitted: the default image",
    )


class InstanceChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: InstanceStatus | None
    to_status: InstanceStatus
    reason: str
    changed_at: datetime


class InstanceSshKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    fingerprint: str
    public_key: str
    comment: str | None


class InstanceDetailOut(InstanceOut):
    history: list[InstanceChangeOut]
    ssh_keys: list[InstanceSshKeyOut] = Field(
        description="The keys its machine was launched with, as they were then"
    )


class InstanceList(BaseModel):
    instances: list[InstanceOut]


_COMPUTED = ("remaining_seconds", "cost_so_far_cents", "cost_so_far_millicents", "image")
_STORED = tuple(name for name in InstanceOut.model_fields if name not in _COMPUTED)


def instance_fields(instance: InstanceFacts, usage: Usage) -> dict[str, Any]:
    """An instance as the API shows it: `InstanceOut`'s fields, in its order, from a loaded
    `Instance` or a row of `list_instances`. The lists serialize this as it is; the other
    answers validate it into an `InstanceOut`."""
    fields = {name: getattr(instance, name) for name in _STORED}
    fields["remaining_seconds"] = usage.remaining_seconds
    fields["cost_so_far_cents"] = usage.cost_so_far_cents
    fields["cost_so_far_millicents"] = usage.cost_so_far_millicents
    fields["image"] = image_fields(instance)
    return fields


def image_fields(instance: InstanceFacts) -> dict[str, Any] | None:
    """`InstanceImageOut`'s fields, in its order, from the instance's copy of its image."""
    if instance.image_slug is None or instance.image_name is None:
        return None
    return {
        "slug": instance.image_slug,
        "name": instance.image_name,
        "versions": [
            {"name": part["name"], "version": part["version"]}
            for part in instance.image_versions or ()
        ],
    }


def instance_out(instance: InstanceFacts, usage: Usage) -> InstanceOut:
    return InstanceOut.model_validate(instance_fields(instance, usage))


def operator_instance_out(instance: ListedInstance, usage: Usage) -> OperatorInstanceOut:
    return OperatorInstanceOut.model_validate(
        instance_fields(instance, usage)
        | {"user_id": instance.user_id, "created_at": instance.created_at}
    )


class OperatorStopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StrictStr = Field(
        min_length=1, max_length=160, description="Why, for the owner's record"
    )

    @field_validator("reason")
    @classmethod
    def _says_something(cls, value: str) -> str:
        cleaned = " ".join(value.split())
        if not cleaned:
            raise ValueError("the reason must say something")
        return cleaned
