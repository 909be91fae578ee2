"""What a benchmark runs against: real PostgreSQL and Redis, a throwaway database and Redis
namespace of its own, the app started as a separate process (`computebill app`), and, for the
phases that need them, workers (`computebill worker`) and the Stripe emulator
(`stripe-emulator serve`), each a process of its own too.

PostgreSQL and Redis come from `DATABASE_URL`/`REDIS_URL` when they are set (only to create and
drop a database of the run's own and to hold keys under a namespace of the run's own), else from
embedded servers started for the run, as in the tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

import httpx
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url

from computebill.config import Settings, child_environment, load_settings
from computebill.devserver.embedded import (
    EmbeddedPostgres,
    EmbeddedServer,
    EmbeddedValkey,
    free_port,
    spawn,
    stop_process,
)
from computebill.devserver.scratch import create_database, delete_namespace, drop_database
from computebill.migrations import upgrade_to_head_async
from computebill.seed import seed_database

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
UNLIMITED = "1000000/minute"  # rate limits high enough never to trigger
# The simulated provider's machines boot at once: provisioning measures the platform, not a sleep.
WORKER_SETTINGS = {"SIMULATED_BOOT_MIN_SECONDS": "0", "SIMULATED_BOOT_MAX_SECONDS": "0"}
BIN = Path(sys.executable).parent


class ServiceFailedToStart(RuntimeError):
    """The app, a worker or the emulator exited, or never answered."""


@dataclass(frozen=True, slots=True)
class Servers:
    postgres_url: str  # the server; the run creates and drops a database of its own on it
    redis_url: str
    origin: str  # where they came from, for the report


def _address(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host}:{parsed.port}"


def _start(stack: ExitStack, server: EmbeddedServer) -> str:
    server.start()
    stack.callback(server.stop)
    return server.url


@contextmanager
def servers(workdir: Path) -> Iterator[Servers]:
    """PostgreSQL and Redis from the environment, or embedded ones for as long as the block runs."""
    configured = load_settings()
    with ExitStack() as stack:
        postgres_url = configured.database_url
        postgres_origin = "DATABASE_URL"
        if postgres_url is None:
            postgres_url = _start(stack, EmbeddedPostgres(workdir / "postgres", free_port()))
            postgres_origin = "embedded"
        redis_url = configured.redis_url
        redis_origin = "REDIS_URL"
        if redis_url is None:
            redis_url = _start(stack, EmbeddedValkey(workdir / "valkey", free_port()))
            redis_origin = "embedded"
        origin = (
            f"PostgreSQL {_address(postgres_url)} ({postgres_origin}), "
            f"Redis {_address(redis_url)} ({redis_origin})"
        )
        yield Servers(postgres_url=postgres_url, redis_url=redis_url, origin=origin)


@dataclass(frozen=True, slots=True)
class Environment:
    """Where everything of one run lives, and the settings the app and the workers run with."""

    values: dict[str, str]  # the settings, as environment variables (names in upper case)
    settings: Settings  # the same values, validated: for this process's own database and queue
    app_port: int
    emulator_port: int
    webhook_secret: str

    @property
    def app_url(self) -> str:
        return f"http://{HOST}:{self.app_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://{HOST}:{self.emulator_port}"

    @property
    def namespace(self) -> str:
        return self.settings.redis_namespace


def _app_settings(
    database_url: str,
    redis_url: str,
    namespace: str,
    bcrypt_rounds: int,
    *,
    app_url: str,
    emulator_url: str,
    webhook_secret: str,
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": namespace,
        "JWT_SECRET": secrets.token_urlsafe(48),
        "TOKEN_PEPPER": secrets.token_urlsafe(48),
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
        "BCRYPT_ROUNDS": str(bcrypt_rounds),
        "RATE_LIMIT_LOGIN_PER_IP": UNLIMITED,
        "RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT": UNLIMITED,
        "RATE_LIMIT_SIGNUP_PER_IP": UNLIMITED,
        "RATE_LIMIT_REFRESH_PER_SESSION": UNLIMITED,
        "PUBLIC_BASE_URL": app_url,
        # Stripe is the emulator (started only for the phase that pays); the webhook phase signs
        # its own events with the same secret.
        "STRIPE_SECRET_KEY": f"sk_test_bench_{secrets.token_hex(8)}",
        "STRIPE_API_BASE": emulator_url,
        "STRIPE_WEBHOOK_SECRET": webhook_secret,
    }


@asynccontextmanager
async def scratch_environment(
    servers: Servers, *, bcrypt_rounds: int
) -> AsyncIterator[Environment]:
    """Settings for the app on a fresh, migrated and seeded database and an unused Redis
    namespace; both are removed when the block ends."""
    database_url = await create_database(servers.postgres_url, "computebill_bench")
    namespace = f"bench-{secrets.token_hex(4)}"
    try:
        app_port, emulator_port = free_port(), free_port()
        while emulator_port == app_port:
            emulator_port = free_port()
        webhook_secret = f"whsec_{secrets.token_hex(24)}"
        values = _app_settings(
            database_url,
            servers.redis_url,
            namespace,
            bcrypt_rounds,
            app_url=f"http://{HOST}:{app_port}",
            emulator_url=f"http://{HOST}:{emulator_port}",
            webhook_secret=webhook_secret,
        )
        # Validated here, before anything starts, with the same values the app will read.
        settings = load_settings(**{name.lower(): value for name, value in values.items()})
        await upgrade_to_head_async(settings)
        await seed_database(settings)  # what `computebill seed` does: the catalog
        yield Environment(values, settings, app_port, emulator_port, webhook_secret)
    finally:
        await drop_database(database_url)
        await delete_namespace(servers.redis_url, namespace)


async def _wait_until(
    process: subprocess.Popen[bytes], name: str, ready: Callable[[], Awaitable[bool]], what: str
) -> None:
    """Until `ready()` says so; raises if the process exits first or it takes too long."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_SECONDS
    while loop.time() < deadline:
        if process.poll() is not None:
            raise ServiceFailedToStart(f"{name} exited with status {process.returncode}")
        if await ready():
            return
        await asyncio.sleep(0.1)
    raise ServiceFailedToStart(f"{name}: {what} within {START_TIMEOUT_SECONDS:.0f} s")


async def _wait_for_http(process: subprocess.Popen[bytes], name: str, url: str) -> None:
    async with httpx.AsyncClient(timeout=2.0) as client:

        async def answers() -> bool:
            try:
                return (await client.get(url)).status_code == httpx.codes.OK
            except httpx.TransportError:
                return False

        await _wait_until(process, name, answers, f"GET {url} did not answer")


@asynccontextmanager
async def _child(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log: IO[bytes],
    ready: Callable[[subprocess.Popen[bytes]], Awaitable[None]],
) -> AsyncIterator[int]:
    """A child process (its pid) from when `ready` returns until the block ends (SIGTERM)."""
    process = spawn(argv, log=log, env=child_environment(env))
    try:
        await ready(process)
        yield process.pid
    finally:
        await asyncio.to_thread(stop_process, process, signal.SIGTERM, STOP_TIMEOUT_SECONDS)


@dataclass(frozen=True, slots=True)
class App:
    pid: int
    base_url: str


class Server(StrEnum):
    """The HTTP server in front of the app: `computebill app` (Uvicorn), or Granian serving the
    same application factory, for the comparison in docs/decisions/0004-http-server.md."""

    UVICORN = "uvicorn"
    GRANIAN = "granian"


def _app_argv(environment: Environment, server: Server, workers: str) -> list[str]:
    if server is Server.UVICORN:
        return [
            *(str(BIN / "computebill"), "app", "--host", HOST, "--port", str(environment.app_port)),
            *("--workers", workers),
        ]
    count = str(os.cpu_count() or 1) if workers == "auto" else workers  # as `computebill app`
    return [
        *(str(BIN / "granian"), "--interface", "asgi", "--loop", "uvloop"),
        *("--host", HOST, "--port", str(environment.app_port), "--workers", count),
        *("--factory", "computebill.app:create_app_from_environment"),
    ]


@asynccontextmanager
async def running_app(
    environment: Environment,
    log: IO[bytes],
    *,
    workers: str = "1",
    server: Server = Server.UVICORN,
) -> AsyncIterator[App]:
    """The app with WORKERS server processes as a child process, answering GET /healthz, until
    the block ends."""
    argv = _app_argv(environment, server, workers)

    async def healthy(process: subprocess.Popen[bytes]) -> None:
        await _wait_for_http(process, "the app", f"{environment.app_url}/healthz")

    async with _child("the app", argv, environment.values, log, healthy) as pid:
        yield App(pid=pid, base_url=environment.app_url)


async def _live_workers(redis: aioredis.Redis, namespace: str) -> int:
    """Workers whose health key (streaq renews it while the worker runs) is in Redis."""
    return len([key async for key in redis.scan_iter(match=f"streaq:{namespace}:health:*")])


@asynccontextmanager
async def running_worker(environment: Environment, log: IO[bytes]) -> AsyncIterator[int]:
    """One more `computebill worker` (with WORKER_SETTINGS), its pid once it takes jobs."""
    argv = [str(BIN / "computebill"), "worker"]
    redis = aioredis.Redis.from_url(environment.settings.required_redis_url)
    try:
        before = await _live_workers(redis, environment.namespace)

        async def taking_jobs(process: subprocess.Popen[bytes]) -> None:
            async def registered() -> bool:
                return await _live_workers(redis, environment.namespace) > before

            await _wait_until(process, "a worker", registered, "no health key in Redis")

        env = environment.values | WORKER_SETTINGS
        async with _child("a worker", argv, env, log, taking_jobs) as pid:
            yield pid
    finally:
        await redis.aclose()


@asynccontextmanager
async def running_emulator(
    environment: Environment, data_dir: Path, log: IO[bytes]
) -> AsyncIterator[int]:
    """`stripe-emulator serve` where the app expects Stripe, delivering its webhooks, signed with
    the app's secret, to the app; its pid."""
    argv = [
        str(BIN / "stripe-emulator"),
        "serve",
        "--host",
        HOST,
        "--port",
        str(environment.emulator_port),
        "--data-dir",
        str(data_dir),
        "--forward-to",
        f"{environment.app_url}/webhooks/stripe",
        "--webhook-secret",
        environment.webhook_secret,
        "--log-level",
        "warning",
    ]

    async def healthy(process: subprocess.Popen[bytes]) -> None:
        await _wait_for_http(
            process, "the emulator", f"{environment.emulator_url}/_emulator/health"
        )

    async with _child("the emulator", argv, {}, log, healthy) as pid:
        yield pid
