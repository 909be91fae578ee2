from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from computebill.catalog.models import Vendor


class GpuModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    slug: str
    vendor: Vendor
    name: str
    architecture: str
    memory_gb: int
    memory_type: str
    memory_bandwidth_gbps: int
    fp16_tflops: int = Field(description="Dense FP16/BF16 tensor throughput")
    fp8_tflops: int | None = Field(description="Dense FP8 tensor throughput, where it exists")
    tdp_watts: int
    form_factor: str
    description: str
    price_per_gpu_hour_cents: int


class GpuModelList(BaseModel):
    gpus: list[GpuModelOut]


class PricingOut(BaseModel):
    currency: str
    vcpu_hour_millicents: int = Field(description="Per vCPU-hour, in 1/1000 of a cent")
    storage_gb_hour_millicents: int = Field(description="Per GB-hour, in 1/1000 of a cent")
    gpu_counts: list[int]
    vcpu_options: list[int]
    storage_gb_options: list[int]
    regions: list[str]
    default_region: str
    min_hours: int
    max_hours: int


class ConfigurationIn(BaseModel):
    """A configuration to price. Any price, total or rate a client adds is ignored."""

    model_config = ConfigDict(extra="ignore")

    gpu: str = Field(max_length=40, description="GPU model slug, e.g. nvidia-h100")
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int
    region: str | None = Field(default=None, max_length=40)


class PriceComponent(BaseModel):
    component: str
    description: str
    per_hour_millicents: int


class QuoteOut(BaseModel):
    gpu: str
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int
    region: str
    components: list[PriceComponent]
    hourly_millicents: int
    hourly_cents: int
    total_cents: int
    currency: str


class GpuModelPatch(BaseModel):
    """An operator's change to a model: its rate, whether it is offered, or both."""

    model_config = ConfigDict(extra="forbid")

    price_per_gpu_hour_cents: StrictInt | None = Field(default=None, ge=1, le=10_000_000)
    active: StrictBool | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> GpuModelPatch:
        if self.price_per_gpu_hour_cents is None and self.active is None:
            raise ValueError("give price_per_gpu_hour_cents, active, or both")
        return self


class GpuModelChangeOut(BaseModel):
    slug: str
    before: dict[str, Any] = Field(description="The changed fields' values before")
    after: dict[str, Any] = Field(description="The changed fields' values now")
