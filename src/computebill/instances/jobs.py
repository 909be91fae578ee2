"""Background jobs of the instances domain: thin, they load and call the service."""

from __future__ import annotations

import uuid
from datetime import timedelta

import structlog

from computebill.db import unit_of_work
from computebill.instances import service
from computebill.instances.models import InstanceStatus
from computebill.jobs import JobContext

log = structlog.get_logger(__name__)


async def provision_order(ctx: JobContext, order_id: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await service.create_instances(db, uuid.UUID(order_id), now=ctx.clock.now())


async def launch_instance(ctx: JobContext, instance_id: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await service.launch(db, ctx.provider, uuid.UUID(instance_id), now=ctx.clock.now())


async def poll_instance(ctx: JobContext, instance_id: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await service.poll(
            db,
            ctx.provider,
            uuid.UUID(instance_id),
            now=ctx.clock.now(),
            deadline=timedelta(seconds=ctx.settings.provision_deadline_seconds),
        )


async def expire_instance(ctx: JobContext, instance_id: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await service.expire(db, ctx.provider, uuid.UUID(instance_id), now=ctx.clock.now())


async def stop_instance(ctx: JobContext, instance_id: str, reason: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await service.stop(
            db, ctx.provider, uuid.UUID(instance_id), reason=reason, now=ctx.clock.now()
        )


async def suspend_instance(ctx: JobContext, instance_id: str, reason: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await service.stop(
            db,
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
