"""E-mail through the configured mail backend; each e-mail is sent at most once per dedupe key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.config import MailBackend
from computebill.mail.models import OutboxEmail, OutboxEmailAttachment

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


async def send_email(
    db: AsyncSession,
    *,
    backend: MailBackend,
    dedupe_key: str,
    recipient: str,
    subject: str,
    body: str,
    now: datetime,
    attachments: Sequence[Attachment] = (),
) -> bool:
    """Send once, with its attachments; False when an e-mail with this key was already sent."""
    if backend is MailBackend.LOG:
        log.info(
            "email",
            dedupe_key=dedupe_key,
            recipient=recipient,
            subject=subject,
            attachments=[attachment.filename for attachment in attachments],
        )
        return True
    inserted = await db.scalar(
        insert(OutboxEmail)
        .values(
            dedupe_key=dedupe_key, recipient=recipient, subject=subject, body=body, created_at=now
        )
        .on_conflict_do_nothing(index_elements=[OutboxEmail.dedupe_key])
        .returning(OutboxEmail.id)
    )
    if inserted is not None and attachments:
        await db.execute(
            insert(OutboxEmailAttachment),
            [
                {
                    "email_id": inserted,
                    "filename": attachment.filename,
                    "content_type": attachment.content_type,
                    "content": attachment.content,
                }
                for attachment in attachments
            ],
        )
    return inserted is not None


async def attachments_of(db: AsyncSession, dedupe_key: str) -> list[OutboxEmailAttachment]:
    """The files sent with the outbox e-mail of this key."""
    return list(
        await db.scalars(
            select(OutboxEmailAttachment)
            .join(OutboxEmail, OutboxEmail.id == OutboxEmailAttachment.email_id)
            .where(OutboxEmail.dedupe_key == dedupe_key)
            .order_by(OutboxEmailAttachment.filename)
        )
    )


async def recent_outbox(db: AsyncSession, *, limit: int = 50) -> list[OutboxEmail]:
    return list(
        await db.scalars(select(OutboxEmail).order_by(OutboxEmail.created_at.desc()).limit(limit))
    )
