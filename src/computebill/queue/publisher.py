"""Sending job requests to the queue, and the queue's overview for the admin pages.

Delivery is at-least-once: every job must be safe to run twice (docs/architecture.md §5.2).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from coredis.exceptions import ResponseError
from streaq import TaskStatus, Worker

from computebill.config import Settings
from computebill.jobs import TRACE_CONTEXT, JobContext, JobRequest
from computebill.queue.wire import queue_options

log = structlog.get_logger(__name__)

# True while a periodic job (a sweep, reconciliation) runs: see `QueuePublisher.publish`.
periodic_run: ContextVar[bool] = ContextVar("periodic_run", default=False)


def _new_worker(settings: Settings) -> Worker[JobContext]:
    """A worker that only publishes (the app's): it never runs jobs."""
    return Worker(lifespan=_no_context, **queue_options(settings))


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
            carried = {TRACE_CONTEXT: dict(request.trace_context)} if request.trace_context else {}
            task = self._worker.enqueue_unsafe(request.name, *request.args, **carried).start(
                schedule=request.at
            )
            if periodic_run.get():
                # A sweep finds work that is committed but unfinished, and that includes work
                # whose job is only waiting its turn. Its requests get an id of their own (the
                # queue keeps a task only while its id is free), so asking again for a job the
                # sweep already asked for, while that job waits or runs, adds nothing: a backlog
                # longer than the sweep's interval no longer grows by the sweep's duplicates.
                task.id = request_id(request)
            tasks.append(task)
        await self._worker.enqueue_many(tasks)

    async def queued(self) -> int:
        return await self._worker.queue_size(include_scheduled=False)


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

    async def queued(self) -> int:
        return await (await self._connected()).queued()

    async def overview(self, *, limit: int = 50) -> QueueOverview:
        """Queued, running, scheduled and recently finished jobs, for the admin view."""
        worker = (await self._connected()).worker
        lists = {
            status: await _tasks_by_status(worker, status, limit)
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


async def _tasks_by_status(worker: Worker[Any], status: TaskStatus, limit: int) -> list[Any]:
    """A status's tasks; none while the queue's streams do not exist yet (no job was ever sent
    on this Redis), which the queue library reports as Redis's `no such key`."""
    try:
        return list(await worker.get_tasks_by_status(status, limit=limit))
    except ResponseError as error:
        if "no such key" not in str(error).lower():
            raise
        return []
