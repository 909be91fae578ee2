"""Operational state: worker heartbeats and the readiness of the platform's dependencies."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import TypeVar

import redis.asyncio as aioredis
import structlog
from sqlalchemy import DateTime, func, literal, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from computebill.credits.models import CreditAccount, CreditEntry, EntryKind
from computebill.instances.models import RUN_END_SQL, Billing, Instance, InstanceStatus
from computebill.metrics import Snapshot, snapshot_fields, snapshot_of_fields
from computebill.ops.models import WorkerHeartbeat
from computebill.ops.schemas import DependencyCheck, Readiness, WorkerCheck
from computebill.payments.models import EventStatus, StripeEvent

log = structlog.get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
T = TypeVar("T")


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


# The metrics snapshot (README, "Health, readiness, metrics") ------------------------------------


def snapshot_key(namespace: str) -> str:
    """The Redis hash holding the gauges that need the database; every app process's /metrics
    reads it with one HGETALL."""
    return f"{namespace}:metrics:snapshot"


_RECENT_RUN = timedelta(days=1)


async def compute_snapshot(
    db: AsyncSession,
    *,
    now: datetime,
    metering_interval_seconds: int,
    credit_cap_sweep_seconds: int,
    queue_depth: int,
) -> Snapshot:
    """Every database gauge, read in a few grouped statements."""
    snapshot: dict[tuple[str, tuple[str, ...]], float] = {
        ("computebill_metering_interval_seconds", ()): metering_interval_seconds,
        ("computebill_queue_depth", ()): queue_depth,
        ("computebill_snapshot_timestamp_seconds", ()): now.timestamp(),
    }
    events = await _count_by(db, StripeEvent.status)
    for status in EventStatus:
        snapshot[("computebill_stripe_events", (status.value,))] = events.get(status, 0)
    oldest = await db.scalar(
        select(func.min(StripeEvent.received_at)).where(StripeEvent.status == EventStatus.PENDING)
    )
    snapshot[("computebill_stripe_event_oldest_pending_age_seconds", ())] = (
        0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
    )
    instances = await _count_by(db, Instance.status)
    for instance_status in InstanceStatus:
        snapshot[("computebill_instances", (instance_status.value,))] = instances.get(
            instance_status, 0
        )
    snapshot[("computebill_metering_lag_seconds", ())] = await _metering_lag_seconds(db, now)
    lowest, below = await _balances_against_bound(
        db, now=now, allowance_seconds=2 * credit_cap_sweep_seconds
    )
    snapshot[("computebill_credit_lowest_balance_millicents", ())] = lowest
    snapshot[("computebill_credit_accounts_below_bound", ())] = below
    return snapshot


async def _count_by(db: AsyncSession, column: InstrumentedAttribute[T]) -> dict[T, int]:
    return dict((await db.execute(select(column, func.count()).group_by(column))).all())


async def _metering_lag_seconds(db: AsyncSession, now: datetime) -> float:
    unsettled = (
        func.extract("epoch", literal(now, DateTime(timezone=True)) - Instance.started_at)
        - Instance.billed_through_seconds
    )
    lag = await db.scalar(
        select(func.max(unsettled)).where(
            Instance.status == InstanceStatus.RUNNING,
            Instance.billing == Billing.PAY_AS_YOU_GO,
            Instance.started_at.is_not(None),
        )
    )
    return 0.0 if lag is None else max(float(lag), 0.0)


async def _balances_against_bound(
    db: AsyncSession, *, now: datetime, allowance_seconds: int
) -> tuple[int, int]:
    """The lowest balance (0 when none is negative), and how many accounts are below the credit
    cap's bound: Σ rates of the account's pay-as-you-go instances that ran in the last day ×
    (the sweep interval + as long again for the stop), below zero. Accounts with a top-up
    reversal are left out: a refund or dispute may take a balance below zero (§4, top-ups)."""
    negative = select(CreditAccount.user_id, CreditAccount.balance_millicents).where(
        CreditAccount.balance_millicents < 0  # through the partial index: few rows
    )
    accounts = negative.subquery()
    rates = (
        select(func.coalesce(func.sum(Instance.rate_millicents_per_hour), 0))
        .where(
            Instance.user_id == accounts.c.user_id,
            Instance.billing == Billing.PAY_AS_YOU_GO,
            Instance.started_at.is_not(None),
            func.coalesce(literal_column(RUN_END_SQL), literal(now, DateTime(timezone=True)))
            > now - _RECENT_RUN,
        )
        .scalar_subquery()
    )
    reversed_ = (
        select(CreditEntry.id)
        .where(
            CreditEntry.user_id == accounts.c.user_id,
            CreditEntry.kind == EntryKind.TOP_UP_REVERSAL,
        )
        .exists()
    )
    bound = -((rates * allowance_seconds + 3599) / 3600)
    row = (
        await db.execute(
            select(
                func.coalesce(func.min(accounts.c.balance_millicents), 0),
                func.count().filter(accounts.c.balance_millicents < bound, ~reversed_),
            ).select_from(accounts)
        )
    ).one()
    return int(row[0]), int(row[1])


async def store_snapshot(redis: aioredis.Redis, namespace: str, snapshot: Snapshot) -> None:
    key = snapshot_key(namespace)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, items=[part for field in snapshot_fields(snapshot) for part in field])
        await pipe.execute()


async def read_snapshot(redis: aioredis.Redis, namespace: str) -> Snapshot:
    """The last stored snapshot; empty when there is none or Redis does not answer (the
    process's own metrics are still worth serving)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            fields = await redis.hgetall(snapshot_key(namespace))
    except Exception as error:
        log.warning("metrics_snapshot_unreadable", error=repr(error))
        return {}
    return snapshot_of_fields(fields)
