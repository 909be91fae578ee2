"""The platform as it runs for real: the app and a worker as processes, Stripe as the emulator
(delivering signed webhooks to the app over HTTP), PostgreSQL and Redis as in every test.

Also what the payment tests share: in-process apps with other settings, signing webhook payloads
like Stripe, and reading the database the app writes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.app import create_app
from computebill.config import LogFormat, Settings
from computebill.db import create_engine, create_sessionmaker
from computebill.devserver.embedded import free_port
from computebill.migrations import upgrade_to_head_async
from computebill.orders.models import Order
from computebill.payments.models import EventStatus, StripeEvent
from computebill.seed import seed_database
from tests.stripe_emulator.support import EmulatorProcess
from tests.support import (
    create_database,
    delete_namespace,
    drop_database,
    serve,
    settings_environment,
)

WEBHOOK_SECRET = "whsec_platform_tests_primary"
OTHER_WEBHOOK_SECRET = "whsec_platform_tests_rotated"
STRIPE_KEY = "sk_test_platform_tests"
DONE = frozenset({EventStatus.PROCESSED, EventStatus.IGNORED})

Sessions = async_sessionmaker[AsyncSession]


@dataclass
class Platform:
    base_url: str
    emulator: EmulatorProcess
    settings: Settings  # the test session's: database, Redis, keys
    app_settings: Settings  # what the app and the worker run with: those plus Stripe and sweeps
    log: Path


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        with log.open("ab") as output:
            self.popen = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()


def wait_healthy(url: str, log: Path, process: Process) -> None:
    deadline = time.monotonic() + 90  # a loaded 2-core machine takes 20 s+ to import the app
    while time.monotonic() < deadline:
        assert process.popen.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer:\n{log.read_text()[-3000:]}")


def with_stripe(
    settings: Settings,
    *,
    api_base: str,
    webhook_secret: str | None = f"{WEBHOOK_SECRET},{OTHER_WEBHOOK_SECRET}",
    **changes: object,
) -> Settings:
    """`settings` talking to Stripe at `api_base` and accepting webhooks signed with
    `webhook_secret` (comma-separated during a rotation; None: no secret configured)."""
    return settings.model_copy(
        update={
            "stripe_secret_key": SecretStr(STRIPE_KEY),
            "stripe_api_base": AnyHttpUrl(api_base),
            "stripe_webhook_secret": SecretStr(webhook_secret) if webhook_secret else None,
            **changes,
        }
    )


@contextmanager
def running_platform(
    settings: Settings, base: Path, *emulator_options: str, **app_changes: object
) -> Iterator[Platform]:
    """An emulator (with extra `emulator_options`) forwarding to an app process, and a worker,
    all configured from `settings` (with `app_changes` to the app's and the worker's settings)."""
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    emulator = EmulatorProcess(
        base / "emulator",
        "--forward-to",
        f"{app_url}/webhooks/stripe",
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--retry-base",
        "0.5",
        "--async-settle-delay",
        "1",
        *emulator_options,
    ).start()
    processes: list[Process] = []
    changes: dict[str, Any] = {
        "simulated_boot_min_seconds": 0.2,
        "simulated_boot_max_seconds": 0.5,
        "log_format": LogFormat.JSON,
    } | app_changes
    try:
        app_settings = with_stripe(
            settings,
            api_base=emulator.base_url,
            public_base_url=AnyHttpUrl(app_url),
            event_sweep_seconds=1,
            event_sweep_after_seconds=2,
            **changes,
        )
        env = settings_environment(app_settings)
        log = base / "platform.log"
        app = Process([sys.executable, "-m", "computebill", "app", "--port", str(port)], env, log)
        processes.append(app)
        processes.append(Process([sys.executable, "-m", "computebill", "worker"], env, log))
        wait_healthy(f"{app_url}/healthz", log, app)
        yield Platform(
            base_url=app_url,
            emulator=emulator,
            settings=settings,
            app_settings=app_settings,
            log=log,
        )
    finally:
        for process in reversed(processes):
            process.stop()
        emulator.stop()


@pytest.fixture(scope="session")
def platform(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(settings, tmp_path_factory.mktemp("platform")) as running:
        yield running


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
        yield client


@asynccontextmanager
async def own_database(settings: Settings, server_url: str) -> AsyncIterator[Settings]:
    """`settings` with a fresh migrated and seeded database and a Redis namespace of their own
    (so no other worker, or sweep, ever sees their events and jobs)."""
    database_url = await create_database(server_url, "computebill_own")
    namespace = "test-" + str(make_url(database_url).database).rsplit("_", 1)[-1]
    own = settings.model_copy(update={"database_url": database_url, "redis_namespace": namespace})
    try:
        await upgrade_to_head_async(own)
        await seed_database(own)
        yield own
    finally:
        await drop_database(database_url)
        await delete_namespace(str(settings.redis_url), namespace)


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app built from `settings`, served in this process, its lifespan running."""
    clients = serve(create_app(settings))
    try:
        yield await anext(clients)
    finally:
        await anext(clients, None)  # the rest of the generator: the app's shutdown


async def grant_admin(settings: Settings, email: str) -> None:
    """The only way to an admin: `computebill admin grant EMAIL` on the command line."""
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "computebill",
        "admin",
        "grant",
        email,
        env=settings_environment(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await command.communicate()
    assert command.returncode == 0, output.decode()


# Webhooks signed like Stripe's ----------------------------------------------------------------


def stripe_event(event_type: str, data_object: dict[str, Any] | None = None) -> dict[str, Any]:
    """An event in Stripe's shape with a fresh id."""
    return {
        "id": f"evt_test_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": data_object or {"id": f"obj_{secrets.token_hex(8)}", "object": "x"}},
    }


def v1_signature(body: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(body: bytes, *secrets_: str, timestamp: int | None = None) -> str:
    """`t=…,v1=…` with one v1 per secret, like Stripe's header (two during a rotation)."""
    at = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={at}", *(f"v1={v1_signature(body, s, at)}" for s in secrets_)])


def body_of(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode()


async def post_event(
    http: httpx.AsyncClient, event: dict[str, Any], *secrets_: str, timestamp: int | None = None
) -> httpx.Response:
    """POST the event to `/webhooks/stripe`, signed with `secrets_` (none: no header)."""
    body = body_of(event)
    headers = {"content-type": "application/json; charset=utf-8"}
    if secrets_:
        headers["stripe-signature"] = signature_header(body, *secrets_, timestamp=timestamp)
    return await http.post("/webhooks/stripe", content=body, headers=headers)


# The database the app writes ------------------------------------------------------------------


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(settings)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Sessions]:
    """Sessions on the test database, to check what the app and the worker stored."""
    async with database(settings) as sessions:
        yield sessions


async def stored_events(db: Sessions, ids: Collection[str]) -> dict[str, StripeEvent]:
    async with db() as session:
        rows = await session.scalars(select(StripeEvent).where(StripeEvent.id.in_(list(ids))))
        return {row.id: row for row in rows}


async def all_events(db: Sessions) -> dict[str, StripeEvent]:
    async with db() as session:
        return {row.id: row for row in await session.scalars(select(StripeEvent))}


async def wait_until_handled(
    db: Sessions, ids: Collection[str], within: float = 15
) -> dict[str, StripeEvent]:
    """The events once every one is stored and processed or ignored (asserts it happens)."""
    deadline = time.monotonic() + within
    while True:
        events = await stored_events(db, ids)
        handled = len(events) == len(set(ids)) and all(e.status in DONE for e in events.values())
        if handled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert handled, {i: (e.status, e.last_error) for i, e in events.items()} | {
        "missing": sorted(set(ids) - set(events))
    }
    return events


async def order_row(db: Sessions, order_id: str) -> Order:
    async with db() as session:
        order = await session.get(Order, uuid.UUID(order_id))
        assert order is not None, order_id
        return order


async def wait_for_log(
    platform: Platform, event: str, within: float = 10, **fields: object
) -> dict[str, Any]:
    """The first JSON line the platform's processes logged for `event` with these fields."""
    deadline = time.monotonic() + within
    while True:
        for line in platform.log.read_text().splitlines():
            try:
                entry: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:  # not ours, or still being written
                continue
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                return entry
        assert time.monotonic() < deadline, f"no {event} {fields} in {platform.log}"
        await asyncio.sleep(0.2)
