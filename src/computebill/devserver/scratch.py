"""Throwaway databases and Redis namespaces, for the tests and the benchmarks: each run makes a
database and a namespace of its own on the configured servers and removes them afterwards, so
runs in parallel never collide (docs/architecture.md §7)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker

Sessions = async_sessionmaker[AsyncSession]


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[Sessions]:
    """Sessions on the settings' database, to check or seed what the app and the worker store."""
    engine = create_engine(settings)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


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
