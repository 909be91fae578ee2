"""What a benchmark runs against: real PostgreSQL and Redis, a throwaway database and Redis
namespace of its own, and the app started as a separate process (`computebill app`).

PostgreSQL and Redis come from `DATABASE_URL`/`REDIS_URL` when they are set (only to create and
drop a database of the run's own and to hold keys under a namespace of the run's own), else from
embedded servers started for the run, as in the tests.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from sqlalchemy.engine import make_url
from tests.support import create_database, delete_namespace, drop_database

from computebill.config import child_environment, load_settings
from computebill.embedded import (
    EmbeddedPostgres,
    EmbeddedServer,
    EmbeddedValkey,
    free_port,
    spawn,
    stop_process,
)
from computebill.migrations import upgrade_to_head_async

HOST = "127.0.0.1"
APP_START_TIMEOUT_SECONDS = 60.0
APP_STOP_TIMEOUT_SECONDS = 15.0
UNLIMITED = "1000000/minute"  # rate limits high enough never to trigger


class AppFailedToStart(RuntimeError):
    """The app exited, or never answered GET /healthz."""


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


def app_settings(
    database_url: str, redis_url: str, namespace: str, bcrypt_rounds: int
) -> dict[str, str]:
    """The app's settings, as environment variables (names in upper case)."""
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
    }


@asynccontextmanager
async def scratch_environment(
    servers: Servers, *, bcrypt_rounds: int
) -> AsyncIterator[dict[str, str]]:
    """Settings for the app on a fresh, migrated database and an unused Redis namespace; both are
    removed when the block ends."""
    database_url = await create_database(servers.postgres_url, "computebill_bench")
    namespace = f"bench-{secrets.token_hex(4)}"
    try:
        values = app_settings(database_url, servers.redis_url, namespace, bcrypt_rounds)
        # Validated here, before anything starts, with the same values the app will read.
        settings = load_settings(**{name.lower(): value for name, value in values.items()})
        await upgrade_to_head_async(settings)
        yield values
    finally:
        await drop_database(database_url)
        await delete_namespace(servers.redis_url, namespace)


async def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + APP_START_TIMEOUT_SECONDS
    async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
        while loop.time() < deadline:
            if process.poll() is not None:
                raise AppFailedToStart(f"the app exited with status {process.returncode}")
            try:
                if (await client.get("/healthz")).status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AppFailedToStart(f"GET /healthz did not answer within {APP_START_TIMEOUT_SECONDS:.0f} s")


@dataclass(frozen=True, slots=True)
class App:
    pid: int
    base_url: str


@asynccontextmanager
async def running_app(settings: dict[str, str], log: IO[bytes]) -> AsyncIterator[App]:
    """`computebill app` as a child process, answering GET /healthz, until the block ends."""
    port = free_port()
    executable = Path(sys.executable).parent / "computebill"
    argv = [str(executable), "app", "--host", HOST, "--port", str(port)]
    process = spawn(argv, log=log, env=child_environment(settings))
    try:
        base_url = f"http://{HOST}:{port}"
        await _wait_until_healthy(process, base_url)
        yield App(pid=process.pid, base_url=base_url)
    finally:
        await asyncio.to_thread(stop_process, process, signal.SIGTERM, APP_STOP_TIMEOUT_SECONDS)
