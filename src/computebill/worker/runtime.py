"""Running jobs: the streaq worker built from the registry, its per-process job context, retries
with backoff, and a fresh start after Redis fails under it.

Delivery is at-least-once: every job must be safe to run twice (docs/architecture.md §5.2).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from coredis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from streaq import StreaqRetry, Worker
from streaq.task import RegisteredTask

from computebill.clock import Clock, SystemClock
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker
from computebill.instances.provider import SimulatedProvider
from computebill.jobs import TRACE_CONTEXT, Attempt, JobContext, current_attempt
from computebill.metrics import JOB_DURATION, JOBS
from computebill.payments.gateway import StripeGateway
from computebill.queue.publisher import QueuePublisher, periodic_run
from computebill.queue.wire import queue_options
from computebill.tracing import job_span
from computebill.worker.registry import JobSpec, job_specs

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 300
RESTART_PAUSE_SECONDS = 1.0


def retry_delay_seconds(tries: int) -> int:
    """Exponential backoff after the given failed try: 2, 4, 8, … seconds, capped."""
    return int(min(2**tries, MAX_BACKOFF_SECONDS))


def _register(worker: Worker[JobContext], name: str, spec: JobSpec) -> None:
    registered: RegisteredTask | None = None

    async def run(*args: Any, **kwargs: Any) -> None:
        assert registered is not None
        tries = registered.context.tries
        job_id = registered.context.task_id
        trace_context = kwargs.pop(TRACE_CONTEXT, None)  # taken off even with tracing off here
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(job=name, job_id=job_id)
        attempt = current_attempt.set(Attempt(number=tries, max_tries=spec.max_tries))
        periodic = periodic_run.set(spec.cron is not None)
        try:
            with job_span(name, trace_context, job_id=job_id, tries=tries):
                await spec.function(worker.context, *args, **kwargs)
        except StreaqRetry:
            JOBS.labels(name, "retried").inc()
            raise
        except Exception as error:
            if tries < spec.max_tries:
                delay = retry_delay_seconds(tries)
                JOBS.labels(name, "retried").inc()
                log.warning("job_retrying", tries=tries, delay_seconds=delay, error=repr(error))
                raise StreaqRetry(f"{name} failed; retrying", delay=delay) from error
            JOBS.labels(name, "failed").inc()
            log.error("job_failed", tries=tries, error=repr(error))
            raise
        else:
            JOBS.labels(name, "succeeded").inc()
        finally:
            periodic_run.reset(periodic)
            current_attempt.reset(attempt)
            JOB_DURATION.labels(name).observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("job", "job_id")

    run.__name__ = run.__qualname__ = name
    if spec.cron is not None:
        registered = worker.cron(
            spec.cron,
            timeout=spec.timeout,
            max_tries=spec.max_tries,
            silent=True,
            name=name,
            unique=spec.unique,
        )(run)
    else:
        registered = worker.task(timeout=spec.timeout, max_tries=spec.max_tries, name=name)(run)


def _from_redis(error: BaseException) -> bool:
    """Whether Redis is behind the failure (the task groups wrap it in exception groups)."""
    if isinstance(error, BaseExceptionGroup):
        return any(_from_redis(inner) for inner in error.exceptions)
    return isinstance(error, RedisError)


def simulated_provider(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock
) -> SimulatedProvider:
    return SimulatedProvider(
        sessionmaker,
        clock=clock,
        boot_seconds=(settings.simulated_boot_min_seconds, settings.simulated_boot_max_seconds),
        failing_gpus=frozenset(
            slug.strip() for slug in settings.simulated_failing_gpus.split(",") if slug.strip()
        ),
    )


def build_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    specs: Mapping[str, JobSpec] | None = None,
) -> Worker[JobContext]:
    """A worker that runs the given jobs (by default, every job of the registry)."""

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[JobContext]:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        clock = SystemClock()
        try:
            yield JobContext(
                settings=settings,
                sessionmaker=sessionmaker,
                publisher=QueuePublisher(worker),
                worker_id=worker.id,
                clock=clock,
                gateway=StripeGateway(settings),
                provider=simulated_provider(settings, sessionmaker, clock),
            )
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled worker still closes its pool
                await engine.dispose()

    worker = Worker(lifespan=lifespan, **queue_options(settings, concurrency=concurrency))
    for name, spec in (job_specs(settings) if specs is None else specs).items():
        _register(worker, name, spec)
    return worker


def run_worker(settings: Settings, *, concurrency: int | None = None) -> None:
    """Run jobs until told to stop (SIGINT/SIGTERM end the run gracefully).

    The queue's state lives in Redis: its consumer groups, its server-side functions and the
    cron schedule (the sweeps that find work no job finished, docs/architecture.md §5.3) are
    created when a worker starts. When Redis fails under a run (restarted empty, flushed, or away
    longer than the client's retries) the library's loops fail; a fresh worker then starts over
    and creates all of it again, instead of the process exiting and leaving jobs and sweeps
    undone."""
    while True:
        try:
            build_worker(settings, concurrency=concurrency).run_sync()
            return
        except Exception as error:
            if not _from_redis(error):
                raise
            log.warning("worker_restarting_after_redis_failure", error=repr(error))
        time.sleep(RESTART_PAUSE_SECONDS)
