from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from computebill.db import Base


class OutboxEmail(Base):
    """An e-mail as sent by the `outbox` mail backend: kept here for people and tests to read."""

    __tablename__ = "outbox_emails"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # What the e-mail is about, e.g. "receipt:<order id>": a job run twice sends it once.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    subject: Mapped[str] = mapped_column(String(300), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, index=True
    )


class OutboxEmailAttachment(Base):
    """A file sent with an outbox e-mail (an invoice's PDF), stored with it."""

    __tablename__ = "outbox_email_attachments"
    __table_args__ = (
        UniqueConstraint(
            "email_id", "filename", name="uq_outbox_email_attachments_email_id_filename"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outbox_emails.id", ondelete="CASCADE"), nullable=False
    )
    filename: Mapped[str] = mapped_column(String(200), nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class RunwayAlert(Base):
    """Whether an account's runway alert at one threshold is armed (docs/architecture.md §4,
    runway alerts). Sending the alert disarms it and counts it in `alerts_sent`, which keys the
    e-mail (`runway:<user>:<threshold seconds>:<alerts_sent>`); a runway seen above the threshold
    again re-arms it. No row: armed, never sent."""

    __tablename__ = "credit_runway_alerts"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    threshold_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    armed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    alerts_sent: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    # When it was last sent or re-armed: a check that read the runway before then re-arms nothing.
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
