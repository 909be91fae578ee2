"""Background jobs of mail: an e-mail's delivery over SMTP, and the sweep of lost deliveries."""

from __future__ import annotations

import uuid
from functools import partial

import structlog

from computebill.config import MailBackend
from computebill.db import unit_of_work
from computebill.jobs import JobContext
from computebill.mail import service

log = structlog.get_logger(__name__)


async def deliver_email(ctx: JobContext, email_id: str) -> None:
    """One try of a queued e-mail; a sent or failed one is left as it is."""
    await service.deliver(
        partial(unit_of_work, ctx.sessionmaker, ctx.publisher),
        uuid.UUID(email_id),
        policy=service.DeliveryPolicy.of(ctx.settings),
        clock=ctx.clock,
    )


async def sweep_queued_emails(ctx: JobContext) -> None:
    """Every minute, with the smtp backend: ask again for e-mails whose delivery job was lost."""
    if ctx.settings.mail_backend is not MailBackend.SMTP:
        return
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        asked = await service.ask_again_for_lost(db, now=ctx.clock.now())
    if asked:
        log.warning("queued_emails_asked_again", emails=asked)
