from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from computebill.catalog.schemas import ConfigurationIn
from computebill.sshkeys.service import MAX_KEYS_PER_ACCOUNT

MAX_QUANTITY = 8


class CartItemIn(ConfigurationIn):
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    ssh_key_ids: list[uuid.UUID] | None = Field(
        default=None,
        max_length=MAX_KEYS_PER_ACCOUNT,
        description="The account's SSH keys for its instances; omitted: all of them, now",
    )
    image: str | None = Field(
        default=None,
        max_length=40,
        description="A machine image's slug (GET /api/v1/images); omitted: the default image",
    )


class QuantityIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class CartLineOut(BaseModel):
    id: uuid.UUID
    gpu: str
    gpu_name: str
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int
    region: str
    quantity: int
    available: bool = Field(description="False when the model has left the catalog")
    hourly_cents: int = Field(description="One instance, per hour, rounded to the cent")
    unit_total_cents: int
    line_total_cents: int
    price_changed: bool
    previous_line_total_cents: int | None = Field(
        description="The line's total at the rates it was added at, when they have changed"
    )
    ssh_key_ids: list[uuid.UUID] = Field(description="The SSH keys its instances are to get")
    image: str | None = Field(description="The machine image its instances are installed with")
    image_name: str | None
    image_available: bool = Field(
        description="False when the image has left the catalog or is no longer offered for the"
        " line's GPU: the line cannot be checked out"
    )


class CartOut(BaseModel):
    items: list[CartLineOut]
    item_count: int
    total_cents: int = Field(description="Sum of the available lines")
    currency: str
