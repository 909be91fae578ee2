"""Helpers the tests share: throwaway databases and Redis namespaces, and an in-process client."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.app import create_app
from computebill.catalog.models import GpuModel
from computebill.catalog.service import set_gpu_rate, set_model_active
from computebill.config import Settings, child_environment
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.orders.models import Order, OrderLine, OrderStatus
from computebill.state import app_state


def postgres_dsn(url: str, database: str) -> str:
    """The server's URL pointing at another database, in the form asyncpg accepts."""
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin_connection(url: str) -> asyncpg.Connection:
    """A connection to the server's `postgres` database. Without TLS: the servers are local,
    and under heavy load a TLS negotiation was seen reset now and then; tried three times."""
    for attempt in (1, 2, 3):
        try:
            return await asyncpg.connect(postgres_dsn(url, "postgres"), ssl=False)
        except OSError:
            if attempt == 3:
                raise
            await asyncio.sleep(attempt)
    raise AssertionError("unreachable")


async def create_database(server_url: str, prefix: str) -> str:
    """Create an empty database with a unique name on the server; return its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await _admin_connection(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return postgres_dsn(server_url, name)


async def drop_database(database_url: str) -> None:
    name = make_url(database_url).database
    # Seen rarely after tests that start and stop queue clients: the admin connection is found
    # closed under the DROP. Cleanup tries once more on a fresh connection rather than leak.
    for attempt in (1, 2):
        admin = await _admin_connection(database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.exceptions.ConnectionDoesNotExistError:
            if attempt == 2:
                raise
        finally:
            await admin.close()


async def delete_namespace(redis_url: str, namespace: str) -> None:
    """Remove every key of a namespace and of the namespaces named after it (`ns-…`): ours
    (`ns:…`) and the queue's (`streaq:ns…`)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        for pattern in (f"streaq:{namespace}*", f"{namespace}*"):
            async for key in client.scan_iter(match=pattern, count=500):
                await client.delete(key)
    finally:
        await client.aclose()


async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and an HTTP client speaking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


class MovableClock:
    """A clock tests move forward instead of sleeping."""

    def __init__(self) -> None:
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> None:
        self._now += timedelta(**delta)


def settings_environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment that configures a child process exactly like these settings."""
    values: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        values[name.upper()] = str(value.value if isinstance(value, Enum) else value)
    return child_environment(values | overrides)


@dataclass
class Api:
    """The app over HTTP, with a clock the test moves."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: MovableClock

    async def sign_up(self, email: str, password: str = "correct horse battery") -> dict[str, Any]:
        answer = await self.http.post(
            "/api/v1/auth/signup", json={"email": email, "password": password, "name": "Test"}
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    async def log_in(
        self, email: str, password: str = "correct horse battery", *, device: str = "laptop"
    ) -> httpx.Response:
        return await self.http.post(
            "/api/v1/auth/login",
            json={"email": email, "password": password},
            headers={"user-agent": device},
        )

    async def refresh(self, token: str) -> httpx.Response:
        return await self.http.post("/api/v1/auth/refresh", json={"refresh_token": token})

    async def get(self, path: str, access_token: str) -> httpx.Response:
        return await self.http.get(path, headers={"authorization": f"Bearer {access_token}"})

    async def call(
        self, method: str, path: str, access_token: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        return await self.http.request(
            method, path, json=body, headers={"authorization": f"Bearer {access_token}"}
        )


async def api_for(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async for http in serve(app):
        clock = MovableClock()
        app_state(app).clock = clock
        yield Api(app=app, http=http, clock=clock)


async def admin_change(
    settings: Settings, app: FastAPI, change: Callable[[AsyncSession], Awaitable[object]]
) -> None:
    """Change the catalog as an admin would: commit, then invalidate every process's cache."""
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            await change(db)
    finally:
        await engine.dispose()
    await app_state(app).catalog_cache.invalidate()


def activate(slug: str, active: bool) -> Callable[[AsyncSession], Awaitable[object]]:
    return lambda db: set_model_active(db, slug=slug, active=active)


def set_rate(slug: str, cents: int) -> Callable[[AsyncSession], Awaitable[object]]:
    return lambda db: set_gpu_rate(db, slug=slug, cents_per_hour=cents)


PaidLine = tuple[str, int, int]  # GPU slug, quantity, hours


async def add_paid_order(
    db: AsyncSession, user_id: uuid.UUID, lines: Sequence[PaidLine], *, now: datetime
) -> Order:
    """A paid order of `lines`, as fulfilment leaves one (its instances not made yet): each line
    2 GPUs, 24 vCPUs and 500 GB at $6.68 an hour. Flushed, not committed."""
    order = Order(
        user_id=user_id,
        status=OrderStatus.PAID,
        currency="usd",
        total_cents=0,
        refunded_cents=0,
        cart_fingerprint="test",
        paid_at=now,
    )
    db.add(order)
    await db.flush()
    for position, (slug, quantity, hours) in enumerate(lines):
        model = await db.scalar(select(GpuModel).where(GpuModel.slug == slug))
        assert model is not None, slug
        unit_total = 668 * hours
        order.total_cents += unit_total * quantity
        db.add(
            OrderLine(
                order_id=order.id,
                position=position,
                gpu_model_id=model.id,
                gpu_slug=slug,
                gpu_name=model.name,
                gpu_count=2,
                vcpus=24,
                storage_gb=500,
                hours=hours,
                region="us-east-1",
                quantity=quantity,
                gpu_hour_cents=249,
                vcpu_hour_millicents=5000,
                storage_gb_hour_millicents=100,
                unit_total_cents=unit_total,
                line_total_cents=unit_total * quantity,
            )
        )
    await db.flush()
    return order
