from __future__ import annotations

import uuid

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from computebill.db import Base, TimestampMixin


class CartItem(TimestampMixin, Base):
    """A configuration in a user's cart, with the rates it was added at (to notice changes)."""

    __tablename__ = "cart_items"
    __table_args__ = (
        UniqueConstraint(
            "user_id",
            "gpu_model_id",
            "gpu_count",
            "vcpus",
            "storage_gb",
            "hours",
            "region",
            name="uq_cart_items_configuration",
        ),
        CheckConstraint("quantity BETWEEN 1 AND 8", name="quantity_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    gpu_model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("gpu_models.id"), nullable=False, index=True
    )
    gpu_count: Mapped[int] = mapped_column(Integer, nullable=False)
    vcpus: Mapped[int] = mapped_column(Integer, nullable=False)
    storage_gb: Mapped[int] = mapped_column(Integer, nullable=False)
    hours: Mapped[int] = mapped_column(Integer, nullable=False)
    region: Mapped[str] = mapped_column(String(40), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    added_gpu_hour_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    added_vcpu_hour_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    added_storage_gb_hour_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The SSH keys (the account's, checked when chosen) its instances are to get.
    ssh_key_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid), nullable=False, server_default=text("'{}'"), default=list
    )
    # The machine image its instances are installed with; None (a line from before images):
    # the default image at checkout.
    image_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("machine_images.id"))
