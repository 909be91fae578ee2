from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from computebill.db import Base, TimestampMixin


class EventStatus(StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    IGNORED = "ignored"  # a type we do not act on, or a stale event
    FAILED = "failed"  # every try failed; `computebill events replay` runs it again


# Where an event names what it is about: its object's id (a Checkout Session, a PaymentIntent,
# a charge) and, for refunds, charges and disputes, the object's PaymentIntent. The console
# finds an order's events by these, through the indexes on the same expressions.
EVENT_OBJECT_ID = "payload #>> '{data,object,id}'"
EVENT_PAYMENT_INTENT = "payload #>> '{data,object,payment_intent}'"


class StripeEvent(Base):
    """The webhook inbox: every verified event, stored before it is acknowledged."""

    __tablename__ = "stripe_events"
    __table_args__ = (
        Index("ix_stripe_events_status_received_at", "status", "received_at"),
        # The console's inbox, newest first: all of it, or of one type.
        Index("ix_stripe_events_received_at", "received_at"),
        Index("ix_stripe_events_type_received_at", "type", "received_at"),
        Index("ix_stripe_events_object_id", text(f"({EVENT_OBJECT_ID})")),
        Index("ix_stripe_events_payment_intent", text(f"({EVENT_PAYMENT_INTENT})")),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # Stripe's evt_…
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[EventStatus] = mapped_column(
        SqlEnum(
            EventStatus, name="stripe_event_status", values_callable=lambda e: [m.value for m in e]
        ),
        nullable=False,
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    outcome: Mapped[str | None] = mapped_column(String(200))


class StripeCustomer(TimestampMixin, Base):
    """The Stripe Customer of a user, created once."""

    __tablename__ = "stripe_customers"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)


class PaymentMethod(TimestampMixin, Base):
    """A card the user saved at Stripe (attached to their Customer), as shown to them; removed
    when it is detached. The default one is what auto-recharge charges (docs/architecture.md §4,
    auto-recharge)."""

    __tablename__ = "payment_methods"
    __table_args__ = (Index("ix_payment_methods_user_id", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    stripe_payment_method_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    brand: Mapped[str] = mapped_column(String(40), nullable=False)
    last4: Mapped[str] = mapped_column(String(4), nullable=False)
    exp_month: Mapped[int] = mapped_column(Integer, nullable=False)
    exp_year: Mapped[int] = mapped_column(Integer, nullable=False)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class AutoRechargeRule(TimestampMixin, Base):
    """A user's auto-recharge: when the live balance falls below `threshold_cents`, charge the
    default card `amount_cents` off-session, once per crossing (docs/architecture.md §4,
    auto-recharge). `armed` is the crossing's latch, `crossings` numbers them (and keys the
    charge), `in_flight_top_up_id` is the charge not finished yet."""

    __tablename__ = "auto_recharge_rules"
    __table_args__ = (
        CheckConstraint("threshold_cents >= 0", name="threshold_not_negative"),
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint(
            "monthly_max_cents IS NULL OR monthly_max_cents > 0", name="monthly_max_positive"
        ),
        # The check's candidates: enabled, unpaused rules (armed ones to charge, disarmed ones
        # to re-arm), few beside every user.
        Index(
            "ix_auto_recharge_rules_active",
            "user_id",
            postgresql_where=text("enabled AND paused_reason IS NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    threshold_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    monthly_max_cents: Mapped[int | None] = mapped_column(BigInteger)
    armed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    crossings: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    paused_reason: Mapped[str | None] = mapped_column(String(300))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    in_flight_top_up_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("credit_top_ups.id"))
    # The UTC month (YYYY-MM) whose monthly maximum was last e-mailed about: once a month.
    monthly_max_notified: Mapped[str | None] = mapped_column(String(7))


class AttemptStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AutoRechargeAttempt(Base):
    """One off-session charge of an auto-recharge: the crossing it answers, its try within that
    crossing, the Stripe idempotency key it was sent with, and how it ended."""

    __tablename__ = "auto_recharge_attempts"
    __table_args__ = (
        Index("ix_auto_recharge_attempts_user_id_created_at", "user_id", "created_at"),
        # Reconciliation's attempts: those still pending.
        Index(
            "ix_auto_recharge_attempts_pending",
            "created_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    crossing: Mapped[int] = mapped_column(Integer, nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    top_up_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("credit_top_ups.id"), unique=True, nullable=False
    )
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    stripe_idempotency_key: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    # The card it charges: sent again unchanged with the key (Stripe refuses a key reused with
    # other parameters), whatever the default is by then.
    stripe_payment_method_id: Mapped[str] = mapped_column(String(255), nullable=False)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[AttemptStatus] = mapped_column(
        SqlEnum(
            AttemptStatus,
            name="auto_recharge_attempt_status",
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=False,
    )
    failure_code: Mapped[str | None] = mapped_column(String(100))
    decline_code: Mapped[str | None] = mapped_column(String(100))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
