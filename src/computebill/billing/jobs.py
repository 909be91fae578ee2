"""Background jobs of the billing domain: the e-mails that warn of credit running out
(docs/architecture.md §4, runway alerts)."""

from __future__ import annotations

import uuid

import structlog

from computebill.billing import service
from computebill.db import unit_of_work
from computebill.jobs import JobContext

log = structlog.get_logger(__name__)


async def send_runway_alerts(ctx: JobContext) -> None:
    """Every minute: e-mail the accounts whose runway dropped below an alert's threshold."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        sent = await service.send_runway_alerts(
            db,
            thresholds_seconds=ctx.settings.runway_alert_seconds,
            backend=ctx.settings.mail_backend,
            public_base_url=str(ctx.settings.public_base_url),
            now=ctx.clock.now(),
        )
    if sent:
        log.info("runway_alerts_sent", emails=sent)


async def send_credit_stop_email(ctx: JobContext, user_id: str, instance_ids: str) -> None:
    """After the credit cap stopped these instances (comma-separated ids): tell their owner."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await service.send_credit_stop_email(
            db,
            uuid.UUID(user_id),
            [uuid.UUID(i) for i in instance_ids.split(",")],
            backend=ctx.settings.mail_backend,
            public_base_url=str(ctx.settings.public_base_url),
            now=ctx.clock.now(),
        )


async def enforce_budgets(ctx: JobContext) -> None:
    """After each settlement pass: budget alerts, and stops where a budget asks for them."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        sent = await service.enforce_budgets(
            db,
            backend=ctx.settings.mail_backend,
            public_base_url=str(ctx.settings.public_base_url),
            now=ctx.clock.now(),
        )
    if sent:
        log.info("budget_alerts_sent", emails=sent)
