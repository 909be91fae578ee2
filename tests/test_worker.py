"""The job queue end to end, against real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time
from datetime import timedelta
from typing import Any

import anyio
import pytest
from sqlalchemy import select
from streaq import StreaqError
from streaq.task import TaskResult

from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.jobs import JobContext, JobName
from computebill.ops.models import WorkerHeartbeat
from computebill.queue.wire import JobError
from computebill.worker.registry import JobSpec, job_specs
from computebill.worker.runtime import build_worker, retry_delay_seconds
from tests.support.settings import settings_environment


def test_backoff_doubles_and_is_capped() -> None:
    assert [retry_delay_seconds(tries) for tries in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert retry_delay_seconds(30) == 300


def test_every_job_name_has_its_function_and_every_function_its_name(settings: Settings) -> None:
    """Services ask for jobs by `JobName`; the registry must run each one, and nothing else."""
    specs = job_specs(settings)
    assert set(specs) == set(JobName)
    assert {name: spec.function.__name__ for name, spec in specs.items()} == {
        name: name.value for name in JobName
    }
    assert set(build_worker(settings).registry) == {name.value for name in JobName}


async def heartbeat_ids(settings: Settings) -> set[str]:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            return set(await session.scalars(select(WorkerHeartbeat.worker_id)))
    finally:
        await engine.dispose()


async def test_the_worker_process_beats_and_stops_gracefully(settings: Settings) -> None:
    before = await heartbeat_ids(settings)
    env = settings_environment(settings) | {"LOG_FORMAT": "json"}
    worker = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "computebill", "worker", "--concurrency", "4"],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        new: set[str] = set()
        while time.monotonic() < deadline and not new:
            await asyncio.sleep(0.5)
            new = await heartbeat_ids(settings) - before
        assert len(new) == 1, "the worker recorded no heartbeat within 20 s"
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(worker.communicate(), timeout=30)
    assert worker.returncode == 0, output.decode()
    log = output.decode()
    assert "received signal SIGTERM" in log
    assert '"logger": "streaq"' in log  # the queue's logs are structured like ours


async def run_jobs(settings: Settings, name: str, spec: JobSpec, *args: object) -> TaskResult[Any]:
    """Run a worker with only this job, on a queue of its own; enqueue it; return its result."""
    own_queue = settings.model_copy(
        update={"redis_namespace": f"{settings.redis_namespace}-{name}"}
    )
    worker = build_worker(own_queue, concurrency=2, specs={name: spec})
    async with anyio.create_task_group() as group:
        await group.start(worker.run_async)
        task = await worker.registry[name].enqueue(*args)
        result = await task.result(timeout=30)
        group.cancel_scope.cancel()
    return result


async def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(
    settings: Settings,
) -> None:
    attempts: list[float] = []

    async def flaky_job(ctx: JobContext, fail_times: int) -> None:
        assert ctx.settings.database_url == settings.database_url
        attempts.append(time.monotonic())
        if len(attempts) <= fail_times:
            raise ConnectionError("the provider is briefly unreachable")

    spec = JobSpec(flaky_job, timeout=timedelta(seconds=5), max_tries=3)
    result = await run_jobs(settings, "flaky_job", spec, 2)
    assert result.success
    assert result.tries == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= retry_delay_seconds(1) - 0.2
    assert gaps[1] >= retry_delay_seconds(2) - 0.2


async def test_a_job_that_keeps_failing_ends_failed_with_its_own_error(
    settings: Settings,
) -> None:
    calls = 0

    async def broken_job(ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("the order does not exist")

    spec = JobSpec(broken_job, timeout=timedelta(seconds=5), max_tries=1)
    result = await run_jobs(settings, "broken_job", spec)
    assert not result.success
    error = result.exception
    assert isinstance(error, JobError)
    assert (error.error_type, error.message) == ("ValueError", "the order does not exist")
    assert calls == 1


async def test_job_arguments_must_be_json(settings: Settings) -> None:
    async def typed_job(ctx: JobContext, value: object) -> None:
        raise AssertionError("must never run")

    worker = build_worker(
        settings, specs={"typed_job": JobSpec(typed_job, timeout=timedelta(seconds=5), max_tries=1)}
    )
    async with worker:
        with pytest.raises(StreaqError, match="serialize"):
            await worker.registry["typed_job"].enqueue(object())
