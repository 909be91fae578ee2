from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from computebill.catalog.models import (
    MAX_GPU_RATE_CENTS,
    MAX_RAM_GB_PER_GPU,
    MAX_VCPUS_PER_GPU,
    Vendor,
)

# A GPU-hour's rate an operator sets, in cents: the same bounds for a new model and a change.
GpuRateCents = Annotated[StrictInt, Field(ge=1, le=MAX_GPU_RATE_CENTS)]
# A datasheet figure (GB, GB/s, TFLOPS, watts).
Figure = Annotated[StrictInt, Field(ge=1, le=1_000_000)]
VcpusPerGpu = Annotated[
    StrictInt,
    Field(ge=1, le=MAX_VCPUS_PER_GPU, description="vCPUs a machine has per GPU (its shape)"),
]
RamGbPerGpu = Annotated[
    StrictInt,
    Field(
        ge=1,
        le=MAX_RAM_GB_PER_GPU,
        description="System RAM per GPU in GB, included in the GPU's rate (its shape)",
    ),
]


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
    vcpus_per_gpu: int = Field(description="vCPUs a machine has per GPU (its shape)")
    ram_gb_per_gpu: int = Field(
        description="System RAM per GPU in GB, included in the GPU's rate (its shape)"
    )
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
    region_cities: dict[str, str] = Field(description="A region's city, where it has one")
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
    ram_gb: int = Field(description="System RAM, included in the shape: it has no rate")
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

    price_per_gpu_hour_cents: GpuRateCents | None = None
    active: StrictBool | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> GpuModelPatch:
        if self.price_per_gpu_hour_cents is None and self.active is None:
            raise ValueError("give price_per_gpu_hour_cents, active, or both")
        return self


class GpuModelIn(BaseModel):
    """A GPU model an operator adds: its datasheet figures and its rate."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    slug: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
        description="Lower-case words joined by hyphens, e.g. nvidia-h100",
    )
    vendor: Vendor
    name: str = Field(min_length=1, max_length=80)
    architecture: str = Field(min_length=1, max_length=40)
    memory_gb: Figure
    memory_type: str = Field(min_length=1, max_length=20)
    memory_bandwidth_gbps: Figure
    fp16_tflops: Figure = Field(description="Dense FP16/BF16 tensor throughput")
    fp8_tflops: Figure | None = Field(
        default=None, description="Dense FP8 tensor throughput, where it exists"
    )
    tdp_watts: Figure
    form_factor: str = Field(min_length=1, max_length=40)
    vcpus_per_gpu: VcpusPerGpu
    ram_gb_per_gpu: RamGbPerGpu
    description: str = Field(min_length=1, max_length=300)
    price_per_gpu_hour_cents: GpuRateCents
    active: StrictBool = True


class GpuModelAdminOut(GpuModelOut):
    """A model as operators see it: offered or not, and where the catalog lists it."""

    active: bool
    position: int


class GpuModelAdminList(BaseModel):
    gpus: list[GpuModelAdminOut]


class GpuModelChangeOut(BaseModel):
    slug: str
    before: dict[str, Any] = Field(description="The changed fields' values before")
    after: dict[str, Any] = Field(description="The changed fields' values now")


class ImageVersion(BaseModel):
    """One component of a machine image and its version, e.g. CUDA 12.6."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=40, description="e.g. Ubuntu, CUDA, PyTorch")
    version: str = Field(min_length=1, max_length=20, pattern=r"^\S+$", description="e.g. 24.04")


# An image's components in the order they are shown, its Ubuntu release first.
ImageVersions = Annotated[list[ImageVersion], Field(min_length=1, max_length=8)]


class MachineImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    slug: str
    name: str
    description: str
    versions: list[ImageVersion]
    vendor: Vendor | None = Field(
        description="The GPU vendor whose software it carries (only that vendor's models offer"
        " it); null for an image offered for every GPU"
    )
    is_default: bool = Field(
        description="What a launch or cart line of its vendor's GPUs gets when it names none"
    )


class MachineImageList(BaseModel):
    images: list[MachineImageOut]


class MachineImageIn(BaseModel):
    """A machine image an operator adds (offered at once unless `active` is false; made the
    default with `PATCH`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    slug: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^[a-z0-9]+([.-][a-z0-9]+)*$",
        description="Lower-case words and versions joined by hyphens, e.g. pytorch-2.6-cuda-12.6",
    )
    name: str = Field(min_length=1, max_length=80)
    description: str = Field(min_length=1, max_length=300)
    versions: ImageVersions
    vendor: Vendor | None = Field(
        default=None,
        description="nvidia for CUDA software, amd for ROCm; none for the driver only (offered"
        " for every GPU). It cannot be changed afterwards.",
    )
    active: StrictBool = True


class MachineImagePatch(BaseModel):
    """An operator's change to an image: any of its words and versions, whether it is offered,
    and `is_default: true` to make it its vendor's default (the default moves; it is never
    unset)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=80)
    description: str | None = Field(default=None, min_length=1, max_length=300)
    versions: ImageVersions | None = None
    active: StrictBool | None = None
    is_default: Literal[True] | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> MachineImagePatch:
        if all(getattr(self, field) is None for field in type(self).model_fields):
            raise ValueError("give at least one of name, description, versions, active, is_default")
        return self


class MachineImageAdminOut(MachineImageOut):
    """An image as operators see it: offered or not, and where the catalog lists it."""

    active: bool
    position: int


class MachineImageAdminList(BaseModel):
    images: list[MachineImageAdminOut]


class MachineImageChangeOut(GpuModelChangeOut):
    """What an operator's change did to an image (and nothing else: a previous default's move
    is in the audit log)."""
