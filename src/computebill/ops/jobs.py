"""Background jobs of the operations domain."""

from __future__ import annotations

import os
import socket

import redis.asyncio as aioredis

from computebill.db import unit_of_work
from computebill.jobs import JobContext
from computebill.ops import service


async def record_worker_heartbeat(ctx: JobContext) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as session:
        await service.record_heartbeat(
            session, worker_id=ctx.worker_id, hostname=socket.gethostname(), pid=os.getpid()
        )


async def record_metrics_snapshot(ctx: JobContext) -> None:
    """The gauges that need the database, computed here so that a scrape never queries it, and
    stored in Redis for every app process's /metrics."""
    queue_depth = await ctx.publisher.queued()
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        snapshot = await service.compute_snapshot(
            db,
            now=ctx.clock.now(),
            metering_interval_seconds=ctx.settings.metering_interval_seconds,
            credit_cap_sweep_seconds=ctx.settings.credit_cap_sweep_seconds,
            queue_depth=queue_depth,
        )
    redis = aioredis.Redis.from_url(ctx.settings.required_redis_url)
    try:
        await service.store_snapshot(redis, ctx.settings.redis_namespace, snapshot)
    finally:
        await redis.aclose()
