"""Stopping a process loses no work: SIGTERM to one of two app processes behind nginx fails no
request, and SIGTERM to a worker finishes or gives back the job it runs."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from computebill.config import LogFormat, Settings
from computebill.credits.models import CreditEntry
from computebill.credits.service import balance
from computebill.db import unit_of_work
from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import database
from tests.credits.ledger import add_user
from tests.ops.nginx import nginx
from tests.ops.slow_job_worker import (
    GRANT_MILLICENTS,
    SLOW_GRANT,
    STARTED,
    grant_key,
    slow_job_worker,
)
from tests.support.platform import Process, wait_healthy
from tests.support.settings import settings_environment

pytestmark = pytest.mark.slow

# cli.py's `timeout_graceful_shutdown`: how long an app lets its requests finish after SIGTERM.
APP_GRACEFUL_SECONDS = 10
LOAD_SECONDS = 8.0
TERMINATE_AFTER_SECONDS = 3.0
CONNECTIONS = 4
READ = "/api/v1/credits/entries"  # authenticated: a session check and a query per request


@dataclass
class Load:
    """What the clients of one address met."""

    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> dict[int | str, int]:
        failures: dict[int | str, int] = {s: n for s, n in self.statuses.items() if s >= 300}
        failures.update(Counter(self.transport_errors))
        return failures


@dataclass
class Stop:
    terminated_at: float = 0.0  # Unix time, as nginx logs it
    exit_status: int | None = None
    stopped_after: float = 0.0  # seconds from SIGTERM to the process's exit


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _read_repeatedly(
    base_url: str, token: str, until: float, load: Load, *, until_an_error: bool = False
) -> None:
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=15) as http:
        while time.monotonic() < until:
            try:
                answer = await http.get(READ)
            except httpx.TransportError as error:
                load.transport_errors.append(type(error).__name__)
                if until_an_error:
                    return
                continue
            load.statuses[answer.status_code] += 1


async def _terminate_later(app: Process, stop: Stop) -> None:
    await asyncio.sleep(TERMINATE_AFTER_SECONDS)
    stop.terminated_at = time.time()
    app.popen.send_signal(signal.SIGTERM)
    # Waited for beside the load, so the time measured is the app's own drain.
    stop.exit_status = await asyncio.to_thread(app.popen.wait, APP_GRACEFUL_SECONDS + 10)
    stop.stopped_after = time.time() - stop.terminated_at


async def _sign_up(base_url: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        answer = await http.post(
            "/api/v1/auth/signup",
            json={"email": "drained@example.com", "password": "correct horse battery"},
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["access_token"])


async def test_sigterm_to_one_of_two_apps_under_load_fails_no_request(
    settings: Settings, tmp_path: Path
) -> None:
    env = settings_environment(settings, LOG_FORMAT="json")
    ports = [free_port(), free_port()]
    upstreams = [f"127.0.0.1:{port}" for port in ports]
    logs = [tmp_path / f"app-{port}.log" for port in ports]
    apps = [
        Process([sys.executable, "-m", "computebill", "app", "--port", str(port)], env, log)
        for port, log in zip(ports, logs, strict=True)
    ]
    stop, through_proxy, direct = Stop(), Load(), Load()
    try:
        for app, upstream, log in zip(apps, upstreams, logs, strict=True):
            wait_healthy(f"http://{upstream}/healthz", log, app)
        token = await _sign_up(f"http://{upstreams[1]}")
        with nginx(upstreams, tmp_path / "nginx") as proxy:
            until = time.monotonic() + LOAD_SECONDS
            await asyncio.gather(
                _terminate_later(apps[0], stop),
                *(
                    _read_repeatedly(proxy.base_url, token, until, through_proxy)
                    for _ in range(CONNECTIONS)
                ),
                # A client of the stopping app alone, as if it had no second replica.
                _read_repeatedly(
                    f"http://{upstreams[0]}", token, until, direct, until_an_error=True
                ),
            )
            async with httpx.AsyncClient(base_url=proxy.base_url) as http:
                after_exit = await http.get(READ, headers={"authorization": f"Bearer {token}"})
            proxied = proxy.requests()
    finally:
        for app in apps:
            app.stop()

    answered = sum(through_proxy.statuses.values())
    assert through_proxy.failed == {}, f"{through_proxy.failed} of {answered} requests failed"
    assert answered >= 50, through_proxy.statuses
    assert stop.exit_status == 0, _tail(logs[0])
    assert stop.stopped_after < APP_GRACEFUL_SECONDS, _tail(logs[0])
    assert after_exit.status_code == 200

    # The stopping app answered every request it took, draining included, and nothing else:
    # its client alone met the stop as a refused or closed connection, never as an error status.
    assert set(direct.statuses) == {200}, direct.statuses
    assert direct.transport_errors, "the stopping app's own client never met its stop"
    # 502 is how nginx logs a try whose connection failed (the app never answers 502 itself).
    tries = Counter(status for r in proxied for status in r.upstream_statuses)
    assert set(tries) <= {"200", "502"}, tries

    # The load reached the app as it was told to stop, and nginx passed it on afterwards: its
    # last answers and the retries show the test ran what it claims.
    before = [r for r in proxied if r.ended_at < stop.terminated_at]
    after = [r for r in proxied if r.ended_at >= stop.terminated_at]
    assert {r.upstreams[-1] for r in before} == set(upstreams)
    assert any(r.upstreams[-1] == upstreams[1] for r in after)
    passed_on = [r for r in after if len(r.upstreams) > 1]
    assert passed_on, "no request met the stopped app after its SIGTERM"
    assert all(r.upstreams[0] == upstreams[0] for r in passed_on)
    assert {r.status for r in proxied} == {200}


# Worker -------------------------------------------------------------------------------------

WORKER_GRACE_SECONDS = 3  # WORKER_SHUTDOWN_GRACE_SECONDS, short to keep the test short


def _starts(log: Path) -> int:
    """How often the slow job started in the worker that logged to `log`."""
    started = 0
    for line in log.read_text().splitlines():
        try:
            started += orjson.loads(line).get("event") == STARTED
        except orjson.JSONDecodeError:  # not a JSON line
            continue
    return started


async def _until_started(log: Path, process: Process, within: float = 90) -> None:
    deadline = time.monotonic() + within
    while _starts(log) == 0:
        assert process.popen.poll() is None, _tail(log)
        assert time.monotonic() < deadline, f"the job did not start:\n{_tail(log)}"
        await asyncio.sleep(0.2)


async def _terminated(worker: Process, log: Path) -> float:
    """SIGTERM to the worker; its exit, 0, awaited: how many seconds it took."""
    terminated_at = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    status = await asyncio.to_thread(worker.popen.wait, WORKER_GRACE_SECONDS + 20)
    assert status == 0, _tail(log)
    return time.monotonic() - terminated_at


async def _granted(settings: Settings, user_id: uuid.UUID) -> tuple[int, int]:
    """The slow job's effect: its ledger entries, and the user's balance."""
    async with database(settings) as sessions, unit_of_work(sessions) as db:
        entries = await db.scalar(
            select(func.count()).where(CreditEntry.idempotency_key == grant_key(user_id))
        )
        return int(entries or 0), await balance(db, user_id)


def _worker_settings(settings: Settings, queue: str) -> Settings:
    return settings.model_copy(
        update={
            "redis_namespace": f"{settings.redis_namespace}-{queue}",
            "worker_shutdown_grace_seconds": WORKER_GRACE_SECONDS,
            "log_format": LogFormat.JSON,
        }
    )


def _start_worker(settings: Settings, log: Path) -> Process:
    argv = [sys.executable, "-m", "tests.ops.slow_job_worker"]
    return Process(argv, settings_environment(settings), log)


async def _new_user(settings: Settings) -> uuid.UUID:
    async with database(settings) as sessions, unit_of_work(sessions) as db:
        return await add_user(db)


async def test_sigterm_to_a_worker_lets_its_running_job_finish(
    settings: Settings, tmp_path: Path
) -> None:
    settings = _worker_settings(settings, "drain")
    user_id = await _new_user(settings)
    log = tmp_path / "worker.log"
    worker = _start_worker(settings, log)
    try:
        async with slow_job_worker(settings) as queue:
            task = await queue.registry[SLOW_GRANT].enqueue(str(user_id), WORKER_GRACE_SECONDS / 3)
            await _until_started(log, worker)
            stopped_after = await _terminated(worker, log)
            result = await task.result(timeout=5)
    finally:
        worker.stop()

    assert result.success, result
    assert stopped_after < WORKER_GRACE_SECONDS
    assert _starts(log) == 1
    assert await _granted(settings, user_id) == (1, GRANT_MILLICENTS)


async def test_sigterm_to_a_worker_gives_back_a_job_longer_than_its_grace(
    settings: Settings, tmp_path: Path
) -> None:
    settings = _worker_settings(settings, "give-back")
    user_id = await _new_user(settings)
    logs = [tmp_path / "first-worker.log", tmp_path / "second-worker.log"]
    first = _start_worker(settings, logs[0])
    second: Process | None = None
    try:
        async with slow_job_worker(settings) as queue:
            task = await queue.registry[SLOW_GRANT].enqueue(str(user_id), WORKER_GRACE_SECONDS + 2)
            await _until_started(logs[0], first)
            stopped_after = await _terminated(first, logs[0])
            assert await _granted(settings, user_id) == (0, 0)  # cancelled, rolled back
            second = _start_worker(settings, logs[1])
            result = await task.result(timeout=90)
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()

    assert result.success, result
    assert WORKER_GRACE_SECONDS <= stopped_after < WORKER_GRACE_SECONDS + 5
    assert [_starts(log) for log in logs] == [1, 1]
    assert await _granted(settings, user_id) == (1, GRANT_MILLICENTS)
