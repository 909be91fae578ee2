"""The job queue: streaq worker settings, the job registry and the cron schedule.

Every use of the queue library lives here, so replacing it touches one module. Delivery is
at-least-once: every job must be safe to run twice (DESIGN §5.2).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec

import anyio
import structlog
from coredis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from streaq import StreaqRetry, TaskStatus, Worker
from streaq.task import RegisteredTask

from computebill.clock import Clock, SystemClock
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker
from computebill.instances.jobs import (
    expire_instance,
    launch_instance,
    poll_instance,
    provision_order,
    stop_instance,
    suspend_instance,
    sweep_instances,
)
from computebill.instances.provider import SimulatedProvider
from computebill.jobs import Attempt, JobContext, JobName, JobRequest, current_attempt
from computebill.metrics import JOB_DURATION, JOBS
from computebill.ops.jobs import record_worker_heartbeat
from computebill.orders.jobs import send_order_receipt
from computebill.payments.gateway import StripeGateway
from computebill.payments.jobs import (
    process_stripe_event,
    reconcile_pending_orders,
    sweep_unprocessed_events,
)

P = ParamSpec("P")
JobFunction = Callable[Concatenate[JobContext, P], Awaitable[None]]

log = structlog.get_logger(__name__)

MAX_BACKOFF_SECONDS = 300
RESTART_PAUSE_SECONDS = 1.0

# True while a periodic job (a sweep, reconciliation) runs: see `QueuePublisher.publish`.
_periodic: ContextVar[bool] = ContextVar("periodic", default=False)


@dataclass(frozen=True, slots=True)
class JobSpec:
    function: JobFunction[...]
    timeout: timedelta
    max_tries: int = 5
    # A crontab (seconds first, seven fields) makes this a periodic job, unique across workers.
    cron: str | None = None


def retry_delay_seconds(tries: int) -> int:
    """Exponential backoff after the given failed try: 2, 4, 8, … seconds, capped."""
    return int(min(2**tries, MAX_BACKOFF_SECONDS))


def job_specs(settings: Settings) -> dict[JobName, JobSpec]:
    """Every job the queue runs: its function, options and (for a periodic one) schedule."""
    return {
        JobName.RECORD_WORKER_HEARTBEAT: JobSpec(
            record_worker_heartbeat,
            timeout=timedelta(seconds=settings.worker_heartbeat_seconds),
            max_tries=1,  # the next tick is the retry
            cron=f"*/{settings.worker_heartbeat_seconds} * * * * * *",
        ),
        JobName.PROCESS_STRIPE_EVENT: JobSpec(
            process_stripe_event, timeout=timedelta(seconds=60), max_tries=6
        ),
        JobName.SEND_ORDER_RECEIPT: JobSpec(
            send_order_receipt, timeout=timedelta(seconds=30), max_tries=5
        ),
        JobName.PROVISION_ORDER: JobSpec(
            provision_order, timeout=timedelta(seconds=60), max_tries=6
        ),
        JobName.LAUNCH_INSTANCE: JobSpec(
            launch_instance, timeout=timedelta(seconds=60), max_tries=6
        ),
        JobName.POLL_INSTANCE: JobSpec(poll_instance, timeout=timedelta(seconds=30), max_tries=6),
        JobName.EXPIRE_INSTANCE: JobSpec(
            expire_instance, timeout=timedelta(seconds=60), max_tries=8
        ),
        JobName.STOP_INSTANCE: JobSpec(stop_instance, timeout=timedelta(seconds=60), max_tries=8),
        JobName.SUSPEND_INSTANCE: JobSpec(
            suspend_instance, timeout=timedelta(seconds=60), max_tries=8
        ),
        JobName.SWEEP_INSTANCES: JobSpec(
            sweep_instances,
            timeout=timedelta(seconds=60),
            max_tries=1,
            cron=f"*/{settings.instance_sweep_seconds} * * * * * *",
        ),
        JobName.SWEEP_UNPROCESSED_EVENTS: JobSpec(
            sweep_unprocessed_events,
            timeout=timedelta(seconds=60),
            max_tries=1,
            cron=f"*/{settings.event_sweep_seconds} * * * * * *",
        ),
        JobName.RECONCILE_PENDING_ORDERS: JobSpec(
            reconcile_pending_orders,
            timeout=timedelta(minutes=5),
            max_tries=1,
            cron="0 * * * * * *",  # every minute
        ),
    }


class JobError(Exception):
    """A job's failure as stored in Redis: the error's type name and message, never the object."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def _encode(value: object) -> object:
    if isinstance(value, BaseException):
        if isinstance(value, JobError):
            return {"__error__": value.error_type, "message": value.message}
        return {"__error__": type(value).__name__, "message": str(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode(value: dict[str, Any]) -> object:
    if set(value) == {"__error__", "message"}:
        return JobError(str(value["__error__"]), str(value["message"]))
    return value


def _serialize(data: Any) -> bytes:
    # JSON, never pickle: a job payload in Redis cannot make the worker run code.
    return json.dumps(data, separators=(",", ":"), default=_encode).encode()


def _deserialize(raw: bytes | str) -> Any:
    return json.loads(raw, object_hook=_decode)


def _register(worker: Worker[JobContext], name: str, spec: JobSpec) -> None:
    registered: RegisteredTask | None = None

    async def run(*args: Any, **kwargs: Any) -> None:
        assert registered is not None
        tries = registered.context.tries
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(job=name, job_id=registered.context.task_id)
        attempt = current_attempt.set(Attempt(number=tries, max_tries=spec.max_tries))
        periodic = _periodic.set(spec.cron is not None)
        try:
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
            _periodic.reset(periodic)
            current_attempt.reset(attempt)
            JOB_DURATION.labels(name).observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("job", "job_id")

    run.__name__ = run.__qualname__ = name
    if spec.cron is not None:
        registered = worker.cron(
            spec.cron, timeout=spec.timeout, max_tries=spec.max_tries, silent=True, name=name
        )(run)
    else:
        registered = worker.task(timeout=spec.timeout, max_tries=spec.max_tries, name=name)(run)


def _worker_options(settings: Settings, *, concurrency: int | None = None) -> dict[str, Any]:
    return {
        "redis_url": settings.required_redis_url,
        # Fail fast when Redis is away: callers fall back on the sweeps.
        "redis_kwargs": {"connect_timeout": 2, "stream_timeout": 10},
        "concurrency": concurrency or settings.worker_concurrency,
        "queue_name": settings.queue_name,
        "serializer": _serialize,
        "deserializer": _deserialize,
        "idle_timeout": settings.job_idle_timeout_seconds,
        "grace_period": 10,
    }


def _new_worker(settings: Settings) -> Worker[JobContext]:
    """A worker that only publishes (the app's): it never runs jobs."""
    return Worker(lifespan=_no_context, **_worker_options(settings))


@asynccontextmanager
async def _no_context() -> AsyncIterator[JobContext]:
    raise RuntimeError("a publishing-only worker never runs jobs")
    yield  # pragma: no cover


class QueuePublisher:
    """Sends job requests to the queue; the app holds one, and each worker uses its own."""

    def __init__(self, worker: Worker[JobContext]) -> None:
        self._worker = worker

    @property
    def worker(self) -> Worker[JobContext]:
        return self._worker

    async def publish(self, requests: list[JobRequest]) -> None:
        tasks = []
        for request in requests:
            task = self._worker.enqueue_unsafe(request.name, *request.args).start(
                schedule=request.at
            )
            if _periodic.get():
                # A sweep finds work that is committed but unfinished, and that includes work
                # whose job is only waiting its turn. Its requests get an id of their own (the
                # queue keeps a task only while its id is free), so asking again for a job the
                # sweep already asked for, while that job waits or runs, adds nothing: a backlog
                # longer than the sweep's interval no longer grows by the sweep's duplicates.
                task.id = request_id(request)
            tasks.append(task)
        await self._worker.enqueue_many(tasks)


def request_id(request: JobRequest) -> str:
    """The same id for the same job, arguments and time."""
    at = request.at.isoformat() if request.at is not None else None
    key = json.dumps([request.name, list(request.args), at], separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class JobView:
    job: str
    job_id: str
    state: str
    tries: int
    at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class QueueOverview:
    queued: list[JobView]
    running: list[JobView]
    scheduled: list[JobView]
    failed: list[JobView]
    succeeded: int  # among the recently finished


def _pending(task: Any, state: str) -> JobView:
    return JobView(
        job=task.fn_name, job_id=task.task_id, state=state, tries=task.tries, at=task.scheduled
    )


def _finished(result: Any) -> JobView:
    return JobView(
        job=result.fn_name,
        job_id=result.task_id,
        state="failed",
        tries=result.tries,
        at=datetime.fromtimestamp(result.finish_time / 1000, tz=UTC),
        error=str(result.exception),
    )


class QueueUnavailable(Exception):
    """Redis cannot be reached right now."""


class AppQueuePublisher:
    """The app's publisher. A task of its own holds the queue connection (the library's context
    must be entered and left in one task) and opens it again after a failure, so the app starts,
    and stores webhooks, while Redis is down; the sweeps send what could not be sent."""

    CONNECT_WAIT_SECONDS = 2.0
    RECONNECT_PAUSE_SECONDS = 1.0

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._publisher: QueuePublisher | None = None
        self._ready = asyncio.Event()
        self._broken = asyncio.Event()
        self._holder: asyncio.Task[None] | None = None
        self._closing = False

    async def _hold(self) -> None:
        while not self._closing:
            try:
                async with _new_worker(self._settings) as worker:
                    self._publisher = QueuePublisher(worker)
                    self._ready.set()
                    await self._broken.wait()
            except Exception as error:
                log.warning("queue_unavailable", error=repr(error))
            finally:
                self._publisher = None
                self._ready.clear()
                self._broken.clear()
            if not self._closing:
                await asyncio.sleep(self.RECONNECT_PAUSE_SECONDS)

    async def _connected(self) -> QueuePublisher:
        if self._holder is None:
            self._holder = asyncio.create_task(self._hold())
        try:
            await asyncio.wait_for(self._ready.wait(), self.CONNECT_WAIT_SECONDS)
        except TimeoutError as error:
            raise QueueUnavailable("the queue is not connected") from error
        if self._publisher is None:
            raise QueueUnavailable("the queue connection was just lost")
        return self._publisher

    async def publish(self, requests: list[JobRequest]) -> None:
        publisher = await self._connected()
        try:
            await publisher.publish(requests)
        except Exception:
            self._broken.set()
            raise

    async def overview(self, *, limit: int = 50) -> QueueOverview:
        """Queued, running, scheduled and recently finished jobs, for the admin view."""
        worker = (await self._connected()).worker
        lists = {
            status: await worker.get_tasks_by_status(status, limit=limit)
            for status in (TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SCHEDULED)
        }
        finished = await worker.get_tasks_by_status(TaskStatus.DONE, limit=limit)
        return QueueOverview(
            queued=[_pending(t, "queued") for t in lists[TaskStatus.QUEUED]],
            running=[_pending(t, "running") for t in lists[TaskStatus.RUNNING]],
            scheduled=[_pending(t, "scheduled") for t in lists[TaskStatus.SCHEDULED]],
            failed=[_finished(r) for r in finished if not r.success],
            succeeded=sum(1 for r in finished if r.success),
        )

    async def close(self) -> None:
        """Leave the connection the way it was entered, in its own task (not by cancelling it:
        the client's sockets must close before the process opens others)."""
        holder, self._holder = self._holder, None
        if holder is None:
            return
        self._closing = True
        self._broken.set()
        try:
            await asyncio.wait_for(holder, self.CONNECT_WAIT_SECONDS + 5)
        except TimeoutError:
            log.warning("queue_connection_close_timed_out")


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

    worker = Worker(lifespan=lifespan, **_worker_options(settings, concurrency=concurrency))
    for name, spec in (job_specs(settings) if specs is None else specs).items():
        _register(worker, name, spec)
    return worker


def run_worker(settings: Settings, *, concurrency: int | None = None) -> None:
    """Run jobs until told to stop (SIGINT/SIGTERM end the run gracefully).

    The queue's state lives in Redis: its consumer groups, its server-side functions and the
    cron schedule (the sweeps that find work no job finished, DESIGN §5.3) are created when a
    worker starts. When Redis fails under a run (restarted empty, flushed, or away longer than
    the client's retries) the library's loops fail; a fresh worker then starts over and creates
    all of it again, instead of the process exiting and leaving jobs and sweeps undone."""
    while True:
        try:
            build_worker(settings, concurrency=concurrency).run_sync()
            return
        except Exception as error:
            if not _from_redis(error):
                raise
            log.warning("worker_restarting_after_redis_failure", error=repr(error))
        time.sleep(RESTART_PAUSE_SECONDS)
