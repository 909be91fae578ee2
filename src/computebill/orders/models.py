from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from computebill.catalog.description import LineDescription
from computebill.db import Base, TimestampMixin


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    EXPIRED = "expired"
    CANCELED = "canceled"
    PAYMENT_FAILED = "payment_failed"


def _status_enum() -> SqlEnum:
    return SqlEnum(OrderStatus, name="order_status", values_callable=lambda e: [m.value for m in e])


class Order(TimestampMixin, Base):
    """A checkout of a cart: its lines are a snapshot; its state follows Stripe's webhooks."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_id_idempotency_key"),
        Index("ix_orders_user_id_created_at", "user_id", "created_at"),
        Index("ix_orders_status_created_at", "status", "created_at"),
        # The console's list of every customer's orders, newest first, and those to review.
        Index("ix_orders_created_at_id", "created_at", "id"),
        Index("ix_orders_needs_review", "created_at", postgresql_where=text("needs_review")),
        # The overview's money in and GPU-hours sold, by the time orders were paid.
        Index("ix_orders_paid_at", "paid_at"),
        # Paid orders whose instances are not all made yet: what the instance sweep reads.
        Index(
            "ix_orders_awaiting_instances",
            "paid_at",
            postgresql_where=text("paid_at IS NOT NULL AND provisioned_at IS NULL"),
        ),
        CheckConstraint("total_cents >= 0", name="total_not_negative"),
        CheckConstraint("refunded_cents BETWEEN 0 AND total_cents", name="refunded_within_total"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    status: Mapped[OrderStatus] = mapped_column(_status_enum(), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    total_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    refunded_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # What the cart held (configurations and quantities), to recognise an unchanged cart.
    cart_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    checkout_url: Mapped[str | None] = mapped_column(String(2048))
    checkout_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    checkout_error: Mapped[str | None] = mapped_column(String(500))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    charge_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When every instance the order is owed had been made (the instance sweep skips it then).
    provisioned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    needs_review: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    review_reason: Mapped[str | None] = mapped_column(String(500))


class OrderLine(Base):
    """One configuration of an order, priced and frozen at checkout."""

    __tablename__ = "order_lines"
    __table_args__ = (
        # The extensions of an instance (its paid time, what an early stop gives back).
        Index(
            "ix_order_lines_extends_instance_id",
            "extends_instance_id",
            postgresql_where=text("extends_instance_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    gpu_model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("gpu_models.id"), nullable=False, index=True
    )
    gpu_slug: Mapped[str] = mapped_column(String(40), nullable=False)
    gpu_name: Mapped[str] = mapped_column(String(80), nullable=False)
    gpu_count: Mapped[int] = mapped_column(Integer, nullable=False)
    vcpus: Mapped[int] = mapped_column(Integer, nullable=False)
    storage_gb: Mapped[int] = mapped_column(Integer, nullable=False)
    hours: Mapped[int] = mapped_column(Integer, nullable=False)
    region: Mapped[str] = mapped_column(String(40), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    gpu_hour_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    vcpu_hour_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    storage_gb_hour_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    unit_total_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    line_total_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The SSH keys its instances get: those of them the account still has when they are made.
    ssh_key_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid), nullable=False, server_default=text("'{}'"), default=list
    )
    # The machine image chosen for its instances (None: a line from before images, whose
    # instances get the default image).
    image_slug: Mapped[str | None] = mapped_column(String(40))
    # An extension: more hours for this existing instance instead of new ones (quantity 1);
    # its name as it was bought, for the line's wording.
    extends_instance_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("instances.id"))
    extends_instance_name: Mapped[str | None] = mapped_column(String(80))

    @property
    def description(self) -> LineDescription:
        return LineDescription.of(self, gpu_name=self.gpu_name, extends=self.extends_instance_name)


class OrderStatusChange(Base):
    """Every transition of an order, with why (the event or action behind it)."""

    __tablename__ = "order_status_changes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    from_status: Mapped[OrderStatus | None] = mapped_column(_status_enum())
    to_status: Mapped[OrderStatus] = mapped_column(_status_enum(), nullable=False)
    reason: Mapped[str] = mapped_column(String(200), nullable=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Refund(Base):
    """A refund of an order's charge, as Stripe reports it."""

    __tablename__ = "refunds"

    # The overview's refunds, by the time they were made.
    __table_args__ = (Index("ix_refunds_created_at", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    refund_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(40), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
