"""E-mail: every message is recorded in `outbox_emails`, once per dedupe key, and delivered by
the configured backend (docs/architecture.md §3, mail).

`outbox` and `log` deliver as they record (the row, or a log line and the row); `smtp` records
the e-mail `queued` and asks for the `deliver_email` job, which hands it to the SMTP server with
no transaction open, then records how it went: `sent`, or another try after a wait that doubles,
or `failed` (a 5xx reply, or out of tries). The sweep asks again for queued e-mails whose job was
lost, so none is forgotten; a try in flight holds the e-mail for longer than it can last, so two
jobs never send one e-mail at once, and a sent e-mail is never sent again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.clock import Clock
from computebill.config import MailBackend, Settings
from computebill.jobs import JobName, request_job
from computebill.mail.compose import Attachment, email_html, mime_message
from computebill.mail.models import EmailStatus, OutboxEmail, OutboxEmailAttachment
from computebill.mail.smtp import DeliveryFailed, SmtpServer, send_message

log = structlog.get_logger(__name__)

UnitsOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]

# A job may start this early for its try (the queue's and the database's clocks).
CLAIM_TOLERANCE = timedelta(seconds=2)
# The longest wait between two tries.
MAX_RETRY_WAIT = timedelta(hours=6)
# A queued e-mail due this long ago has lost its job: the sweep asks for another.
LOST_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500


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
    html_body: str | None = None,
) -> bool:
    """Record the e-mail with its attachments and deliver it through `backend`, once per key;
    False when an e-mail with this key was recorded before. `body` is the text part;
    `html_body`, the HTML of the message's content (its caller escapes what it interpolates),
    else the HTML part is made from the text. Both go out in the platform's layout."""
    delivered = backend is not MailBackend.SMTP
    inserted = await db.scalar(
        insert(OutboxEmail)
        .values(
            dedupe_key=dedupe_key,
            recipient=recipient,
            subject=subject,
            body=body,
            html_body=email_html(subject=subject, text=body, html_content=html_body),
            status=EmailStatus.SENT if delivered else EmailStatus.QUEUED,
            attempts=1 if delivered else 0,
            sent_at=now if delivered else None,
            next_attempt_at=None if delivered else now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[OutboxEmail.dedupe_key])
        .returning(OutboxEmail.id)
    )
    if inserted is None:
        return False
    if attachments:
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
    if backend is MailBackend.LOG:
        log.info(
            "email",
            dedupe_key=dedupe_key,
            recipient=recipient,
            subject=subject,
            attachments=[attachment.filename for attachment in attachments],
        )
    elif backend is MailBackend.SMTP:
        request_job(db, JobName.DELIVER_EMAIL, str(inserted))
    return True


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How the smtp backend delivers: where, from whom, how many tries, how long between."""

    server: SmtpServer
    sender: str
    max_attempts: int
    first_retry_wait: timedelta

    @classmethod
    def of(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            server=SmtpServer.of(settings),
            sender=settings.mail_from,
            max_attempts=settings.mail_max_attempts,
            first_retry_wait=timedelta(seconds=settings.mail_retry_seconds),
        )

    @property
    def lease(self) -> timedelta:
        """How long a try holds its e-mail: beyond the longest a send can take."""
        return timedelta(seconds=2 * self.server.timeout_seconds + 30)

    def wait_after(self, attempts: int) -> timedelta:
        wait: timedelta = self.first_retry_wait * 2 ** (attempts - 1)
        return min(wait, MAX_RETRY_WAIT)


async def _claim(
    db: AsyncSession, email_id: uuid.UUID, *, lease_until: datetime, now: datetime
) -> OutboxEmail | None:
    """Start a try of a queued e-mail that is due, counting it and holding the e-mail until
    `lease_until`; None when it is sent, failed, or not due (another try holds it, or waits)."""
    claimed = await db.scalar(
        update(OutboxEmail)
        .where(
            OutboxEmail.id == email_id,
            OutboxEmail.status == EmailStatus.QUEUED,
            OutboxEmail.next_attempt_at <= now + CLAIM_TOLERANCE,
        )
        .values(attempts=OutboxEmail.attempts + 1, next_attempt_at=lease_until)
        .returning(OutboxEmail)
    )
    return claimed


async def deliver(
    units: UnitsOfWork, email_id: uuid.UUID, *, policy: DeliveryPolicy, clock: Clock
) -> None:
    """One try of a queued e-mail over SMTP, between two transactions (no row is locked while
    the server is talked to); the outcome is recorded in the second."""
    now = clock.now()
    async with units() as db:
        email = await _claim(db, email_id, lease_until=now + policy.lease, now=now)
        if email is None:
            return
        attachments = [
            Attachment(a.filename, a.content_type, a.content)
            for a in await attachments_of_email(db, email_id)
        ]
    message = mime_message(
        message_id=str(email.id),
        sender=policy.sender,
        recipient=email.recipient,
        subject=email.subject,
        text=email.body,
        html=email.html_body,
        attachments=attachments,
        created_at=email.created_at,
    )
    failure: DeliveryFailed | None = None
    try:
        await send_message(policy.server, message)
    except DeliveryFailed as error:
        failure = error
    async with units() as db:
        await _record_try(db, email, failure, policy=policy, now=clock.now())


async def _record_try(
    db: AsyncSession,
    email: OutboxEmail,
    failure: DeliveryFailed | None,
    *,
    policy: DeliveryPolicy,
    now: datetime,
) -> None:
    held = update(OutboxEmail).where(
        OutboxEmail.id == email.id, OutboxEmail.status == EmailStatus.QUEUED
    )
    context = {"email_id": str(email.id), "dedupe_key": email.dedupe_key, "attempt": email.attempts}
    if failure is None:
        await db.execute(
            held.values(status=EmailStatus.SENT, sent_at=now, next_attempt_at=None, last_error=None)
        )
        log.info("email_sent", **context)
    elif failure.permanent or email.attempts >= policy.max_attempts:
        await db.execute(
            held.values(status=EmailStatus.FAILED, next_attempt_at=None, last_error=str(failure))
        )
        log.error("email_failed", **context, permanent=failure.permanent, error=str(failure))
    else:
        retry_at = now + policy.wait_after(email.attempts)
        await db.execute(held.values(next_attempt_at=retry_at, last_error=str(failure)))
        request_job(db, JobName.DELIVER_EMAIL, str(email.id), at=retry_at)
        log.warning("email_retry", **context, retry_at=retry_at.isoformat(), error=str(failure))


async def ask_again_for_lost(db: AsyncSession, *, now: datetime) -> int:
    """Ask for the delivery of queued e-mails due more than LOST_AFTER ago (their job was lost
    with Redis, or its worker died); how many."""
    lost = list(
        await db.scalars(
            select(OutboxEmail.id)
            .where(
                OutboxEmail.status == EmailStatus.QUEUED,
                OutboxEmail.next_attempt_at < now - LOST_AFTER,
            )
            .order_by(OutboxEmail.next_attempt_at)
            .limit(SWEEP_BATCH)
        )
    )
    for email_id in lost:
        request_job(db, JobName.DELIVER_EMAIL, str(email_id))
    return len(lost)


async def attachments_of_email(
    db: AsyncSession, email_id: uuid.UUID
) -> list[OutboxEmailAttachment]:
    return await _attachments(db, OutboxEmailAttachment.email_id == email_id)


async def attachments_of(db: AsyncSession, dedupe_key: str) -> list[OutboxEmailAttachment]:
    """The files sent with the e-mail of this key."""
    return await _attachments(
        db,
        OutboxEmailAttachment.email_id.in_(
            select(OutboxEmail.id).where(OutboxEmail.dedupe_key == dedupe_key)
        ),
    )


async def _attachments(
    db: AsyncSession, condition: ColumnElement[bool]
) -> list[OutboxEmailAttachment]:
    return list(
        await db.scalars(
            select(OutboxEmailAttachment).where(condition).order_by(OutboxEmailAttachment.filename)
        )
    )


async def recent_outbox(db: AsyncSession, *, limit: int = 50) -> list[OutboxEmail]:
    return list(
        await db.scalars(select(OutboxEmail).order_by(OutboxEmail.created_at.desc()).limit(limit))
    )
