from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from computebill.db import Base, TimestampMixin


class EventStatus(StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    IGNORED = "ignored"  # a type we do not act on, or a stale event
    FAILED = "failed"  # every try failed; `computebill events replay` runs it again


class StripeEvent(Base):
    """The webhook inbox: every verified event, stored before it is acknowledged."""

    __tablename__ = "stripe_events"
    __table_args__ = (Index("ix_stripe_events_status_received_at", "status", "received_at"),)

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
