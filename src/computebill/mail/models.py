"""Every e-mail sent, with its attachments and how its delivery went."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
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


class EmailStatus(StrEnum):
    QUEUED = "queued"  # waiting for the SMTP delivery job (or its next try)
    SENT = "sent"
    FAILED = "failed"  # refused for good, or out of tries; `last_error` says why


class OutboxEmail(Base):
    """Every e-mail the platform sends, whatever the backend: the `outbox` backend's delivery is
    this row; the `smtp` backend's delivery job reads it and records how it went."""

    __tablename__ = "outbox_emails"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'sent', 'failed')", name="status_known"),
        CheckConstraint("(status = 'sent') = (sent_at IS NOT NULL)", name="sent_at_when_sent"),
        # The sweep's read: the queued e-mails whose next try is due (docs/architecture.md §5.3).
        Index(
            "ix_outbox_emails_queued_next_attempt_at",
            "next_attempt_at",
            postgresql_where=text("status = 'queued'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # What the e-mail is about, e.g. "receipt:<order id>": a job run twice sends it once.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    subject: Mapped[str] = mapped_column(String(300), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    html_body: Mapped[str | None] = mapped_column(Text)  # None in rows from before it was kept
    status: Mapped[str] = mapped_column(String(10), nullable=False)
    # Tries so far; a try is counted when it starts, so one cut short still counts.
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    # A queued e-mail's next try is not before this; a try in flight moves it past its timeout,
    # so neither a second job nor the sweep starts another meanwhile.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
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
