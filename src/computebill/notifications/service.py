"""E-mail through the configured mail backend; each e-mail is sent at most once per dedupe key."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.config import MailBackend
from computebill.notifications.models import OutboxEmail

log = structlog.get_logger(__name__)


async def send_email(
    db: AsyncSession,
    *,
    backend: MailBackend,
    dedupe_key: str,
    recipient: str,
    subject: str,
    body: str,
    now: datetime,
) -> bool:
    """Send once; False when an e-mail with this key was already sent."""
    if backend is MailBackend.LOG:
        log.info("email", dedupe_key=dedupe_key, recipient=recipient, subject=subject)
        return True
    inserted = await db.scalar(
        insert(OutboxEmail)
        .values(
            dedupe_key=dedupe_key, recipient=recipient, subject=subject, body=body, created_at=now
        )
        .on_conflict_do_nothing(index_elements=[OutboxEmail.dedupe_key])
        .returning(OutboxEmail.id)
    )
    return inserted is not None


async def recent_outbox(db: AsyncSession, *, limit: int = 50) -> list[OutboxEmail]:
    return list(
        await db.scalars(select(OutboxEmail).order_by(OutboxEmail.created_at.desc()).limit(limit))
    )
