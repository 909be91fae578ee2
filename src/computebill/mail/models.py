"""E-mails as sent, with their attachments."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, LargeBinary, String, Text, UniqueConstraint
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
