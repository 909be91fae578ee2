"""Operational state: worker heartbeats and the readiness of the platform's dependencies."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.ops.models import WorkerHeartbeat
from computebill.ops.schemas import DependencyCheck, Readiness, WorkerCheck

CHECK_TIMEOUT_SECONDS = 2.0


async def record_heartbeat(
    session: AsyncSession, *, worker_id: str, hostname: str, pid: int
) -> None:
    # The database clock stamps heartbeats and measures their age, so skew between hosts is moot.
    statement = insert(WorkerHeartbeat).values(
        worker_id=worker_id, hostname=hostname, pid=pid, seen_at=func.now()
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[WorkerHeartbeat.worker_id],
            set_={"seen_at": statement.excluded.seen_at, "updated_at": func.now()},
        )
    )


async def newest_heartbeat_age_seconds(session: AsyncSession) -> float | None:
    """Seconds since the most recent heartbeat of any worker, or None if there is none."""
    age = await session.scalar(
        select(func.extract("epoch", func.now() - func.max(WorkerHeartbeat.seen_at)))
    )
    return None if age is None else max(float(age), 0.0)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


async def _check_database(engine: AsyncEngine) -> tuple[DependencyCheck, float | None]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), AsyncSession(engine) as session:
            await session.execute(text("SELECT 1"))
            latency = _elapsed_ms(started)
            age = await newest_heartbeat_age_seconds(session)
    except Exception as error:
        return DependencyCheck(status="fail", detail=_describe(error)), None
    return DependencyCheck(status="ok", detail="reachable", latency_ms=latency), age


async def _check_redis(client: aioredis.Redis) -> DependencyCheck:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await client.ping()
    except Exception as error:
        return DependencyCheck(status="fail", detail=_describe(error))
    return DependencyCheck(status="ok", detail="reachable", latency_ms=_elapsed_ms(started))


def _check_worker(age: float | None, *, database_ok: bool, max_age_seconds: int) -> WorkerCheck:
    if not database_ok:
        return WorkerCheck(
            status="fail", detail="unknown: the database is down", max_age_seconds=max_age_seconds
        )
    if age is None:
        return WorkerCheck(
            status="fail", detail="no worker has reported yet", max_age_seconds=max_age_seconds
        )
    stale = age > max_age_seconds
    return WorkerCheck(
        status="fail" if stale else "ok",
        detail=f"no heartbeat for {age:.0f} s" if stale else "heartbeat is fresh",
        last_heartbeat_age_seconds=round(age, 1),
        max_age_seconds=max_age_seconds,
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message}"[:200]


async def check_readiness(
    engine: AsyncEngine, redis: aioredis.Redis, *, max_heartbeat_age_seconds: int
) -> Readiness:
    (database, age), redis_check = await asyncio.gather(
        _check_database(engine), _check_redis(redis)
    )
    worker = _check_worker(
        age, database_ok=database.status == "ok", max_age_seconds=max_heartbeat_age_seconds
    )
    checks: dict[str, DependencyCheck | WorkerCheck] = {
        "database": database,
        "redis": redis_check,
        "worker": worker,
    }
    down = [name for name, check in checks.items() if check.status == "fail"]
    return Readiness(status="fail" if down else "ok", down=down, checks=checks)
