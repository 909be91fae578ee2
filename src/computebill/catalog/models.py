from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    text,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from computebill.db import Base, TimestampMixin

# Upper bounds on admin-set rates keep every line total far inside a Postgres bigint.
MAX_GPU_RATE_CENTS = 10_000_000  # $100,000 per GPU-hour
MAX_COMPONENT_RATE_MILLICENTS = 100_000_000  # $1,000 per vCPU-hour or GB-hour
# A machine's shape per GPU: what one GPU comes with (a model added without them gets these).
MAX_VCPUS_PER_GPU = 256
MAX_RAM_GB_PER_GPU = 4096
DEFAULT_VCPUS_PER_GPU = 12
DEFAULT_RAM_GB_PER_GPU = 128


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"


def _vendor_enum() -> SqlEnum:
    return SqlEnum(Vendor, name="gpu_vendor", values_callable=lambda e: [m.value for m in e])


class GpuModel(TimestampMixin, Base):
    """A GPU model we sell, with its datasheet highlights and its hourly rate."""

    __tablename__ = "gpu_models"
    __table_args__ = (
        CheckConstraint(
            f"price_per_gpu_hour_cents BETWEEN 0 AND {MAX_GPU_RATE_CENTS}", name="gpu_rate_range"
        ),
        CheckConstraint(
            f"vcpus_per_gpu BETWEEN 1 AND {MAX_VCPUS_PER_GPU}"
            f" AND ram_gb_per_gpu BETWEEN 1 AND {MAX_RAM_GB_PER_GPU}",
            name="shape_range",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    vendor: Mapped[Vendor] = mapped_column(_vendor_enum(), nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    architecture: Mapped[str] = mapped_column(String(40), nullable=False)
    memory_gb: Mapped[int] = mapped_column(Integer, nullable=False)
    memory_type: Mapped[str] = mapped_column(String(20), nullable=False)
    memory_bandwidth_gbps: Mapped[int] = mapped_column(Integer, nullable=False)  # GB/s
    fp16_tflops: Mapped[int] = mapped_column(Integer, nullable=False)  # dense FP16/BF16 tensor
    fp8_tflops: Mapped[int | None] = mapped_column(Integer)  # dense FP8 tensor, where it exists
    tdp_watts: Mapped[int] = mapped_column(Integer, nullable=False)
    form_factor: Mapped[str] = mapped_column(String(40), nullable=False)
    # The machine's shape: its vCPUs and system RAM follow the GPU count. RAM is included in
    # the GPU's rate, never priced on its own; vCPUs are priced as the customer chooses them.
    vcpus_per_gpu: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=text(str(DEFAULT_VCPUS_PER_GPU))
    )
    ram_gb_per_gpu: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=text(str(DEFAULT_RAM_GB_PER_GPU))
    )
    description: Mapped[str] = mapped_column(String(300), nullable=False)
    price_per_gpu_hour_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    position: Mapped[int] = mapped_column(SmallInteger, nullable=False, default=0)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class PricingPolicy(TimestampMixin, Base):
    """The one row of configuration options and non-GPU rates (an admin may edit it)."""

    __tablename__ = "pricing_policy"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint(
            f"vcpu_hour_millicents BETWEEN 0 AND {MAX_COMPONENT_RATE_MILLICENTS}",
            name="vcpu_rate_range",
        ),
        CheckConstraint(
            f"storage_gb_hour_millicents BETWEEN 0 AND {MAX_COMPONENT_RATE_MILLICENTS}",
            name="storage_rate_range",
        ),
        CheckConstraint(
            "min_hours >= 1 AND max_hours >= min_hours AND max_hours <= 8760", name="hours_range"
        ),
    )

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False, default=1)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    # Rates below a cent are kept exact in millicents (1/1000 ¢) and rounded once per line.
    vcpu_hour_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    storage_gb_hour_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    gpu_counts: Mapped[list[int]] = mapped_column(ARRAY(Integer), nullable=False)
    vcpu_options: Mapped[list[int]] = mapped_column(ARRAY(Integer), nullable=False)
    storage_gb_options: Mapped[list[int]] = mapped_column(ARRAY(Integer), nullable=False)
    regions: Mapped[list[str]] = mapped_column(ARRAY(String(40)), nullable=False)
    # Each region's city for people ({"us-east-1": "N. Virginia"}); a region without one shows
    # its name alone.
    region_cities: Mapped[dict[str, str]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    default_region: Mapped[str] = mapped_column(String(40), nullable=False)
    min_hours: Mapped[int] = mapped_column(Integer, nullable=False)
    max_hours: Mapped[int] = mapped_column(Integer, nullable=False)


class MachineImage(TimestampMixin, Base):
    """What an instance's machine is installed with: an Ubuntu release and the GPU software on
    it. `versions` lists its components in the order they are shown, as
    `[{"name": "Ubuntu", "version": "24.04"}, {"name": "CUDA", "version": "12.6"}, …]`.
    `vendor` is the GPU vendor whose software it carries (CUDA for NVIDIA, ROCm for AMD): only
    that vendor's models offer it; an image without one (the driver only) is offered for every
    model. Each vendor has one default image (what a launch or a cart line gets when it names
    none), always offered."""

    __tablename__ = "machine_images"
    __table_args__ = (
        CheckConstraint("active OR NOT is_default", name="default_is_active"),
        CheckConstraint("vendor IS NOT NULL OR NOT is_default", name="default_has_vendor"),
        CheckConstraint(
            "jsonb_typeof(versions) = 'array' AND jsonb_array_length(versions) >= 1",
            name="versions_listed",
        ),
        # At most one default per vendor; the service keeps one by moving it, never removing it.
        Index(
            "uq_machine_images_default",
            "vendor",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    description: Mapped[str] = mapped_column(String(300), nullable=False)
    versions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    vendor: Mapped[Vendor | None] = mapped_column(_vendor_enum())
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    position: Mapped[int] = mapped_column(SmallInteger, nullable=False, default=0)
