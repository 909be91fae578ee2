"""Background jobs of the instances domain: thin, they load and call the service."""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial

import structlog

from computebill.db import unit_of_work
from computebill.instances import metering, service
from computebill.instances.models import InstanceStatus
from computebill.jobs import JobContext, JobName, request_job

log = structlog.get_logger(__name__)


async def provision_order(ctx: JobContext, order_id: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await service.create_instances(db, uuid.UUID(order_id), now=ctx.clock.now())


def units_of(ctx: JobContext) -> service.UnitsOfWork:
    """The job's transactions, for the operations that call the provider between them."""
    return partial(unit_of_work, ctx.sessionmaker, ctx.publisher)


async def launch_instance(ctx: JobContext, instance_id: str) -> None:
    await service.launch(units_of(ctx), ctx.provider, uuid.UUID(instance_id), now=ctx.clock.now())


async def poll_instance(ctx: JobContext, instance_id: str) -> None:
    await service.poll(
        units_of(ctx),
        ctx.provider,
        uuid.UUID(instance_id),
        now=ctx.clock.now(),
        deadline=timedelta(seconds=ctx.settings.provision_deadline_seconds),
    )


async def expire_instance(ctx: JobContext, instance_id: str) -> None:
    await service.expire(units_of(ctx), ctx.provider, uuid.UUID(instance_id), now=ctx.clock.now())


async def stop_instance(ctx: JobContext, instance_id: str, reason: str) -> None:
    await service.stop(
        units_of(ctx),
        ctx.provider,
        uuid.UUID(instance_id),
        reason=reason,
        now=ctx.clock.now(),
    )


async def suspend_instance(ctx: JobContext, instance_id: str, reason: str) -> None:
    await service.stop(
        units_of(ctx),
        ctx.provider,
        uuid.UUID(instance_id),
        reason=reason,
        now=ctx.clock.now(),
        final=InstanceStatus.SUSPENDED,
    )


async def sweep_instances(ctx: JobContext) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        found = await service.sweep(
            db,
            now=ctx.clock.now(),
            stale_after=timedelta(seconds=max(60, 3 * ctx.settings.instance_sweep_seconds)),
        )
    if any(found.values()):
        log.info("instances_swept", **found)


async def send_expiry_warnings(ctx: JobContext) -> None:
    """Every minute: e-mail the owners of fixed-hours instances that stop within the hour."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        sent = await service.send_expiry_warnings(
            db,
            backend=ctx.settings.mail_backend,
            public_base_url=str(ctx.settings.public_base_url),
            now=ctx.clock.now(),
        )
    if sent:
        log.info("expiry_warnings_sent", emails=sent)


async def settle_usage(ctx: JobContext) -> None:
    """Every METERING_INTERVAL_SECONDS: charge every running pay-as-you-go instance to now, then
    have the budgets judged on what that posted."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        settled = await metering.settle_all(db, now=ctx.clock.now())
        request_job(db, JobName.ENFORCE_BUDGETS)
        if settled.charges:
            # Balances fell: an auto-recharge threshold may be crossed now.
            request_job(db, JobName.CHECK_AUTO_RECHARGE)
    if settled.instances:
        log.info(
            "usage_settled",
            instances=settled.instances,
            charged_instances=settled.charged_instances,
            accounts=len(settled.charges),
            millicents=sum(settled.charges.values()),
        )


async def enforce_credit_cap(ctx: JobContext, user_id: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await service.enforce_credit_cap(
            db,
            uuid.UUID(user_id),
            margin_seconds=ctx.settings.stop_margin_seconds,
            now=ctx.clock.now(),
        )


async def sweep_credit_caps(ctx: JobContext) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        stopped = await service.sweep_credit_caps(
            db, margin_seconds=ctx.settings.stop_margin_seconds, now=ctx.clock.now()
        )
    if stopped:
        log.warning("credit_cap_swept", stopped=stopped)
