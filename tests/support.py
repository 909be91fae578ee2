"""Helpers the tests share: throwaway databases and Redis namespaces, and an in-process client."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy.engine import make_url


def postgres_dsn(url: str, database: str) -> str:
    """The server's URL pointing at another database, in the form asyncpg accepts."""
    parsed = make_url(url).set(drivername="postgresql", database=database)
    return parsed.render_as_string(hide_password=False)


async def create_database(server_url: str, prefix: str) -> str:
    """Create an empty database with a unique name on the server; return its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_dsn(server_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return postgres_dsn(server_url, name)


async def drop_database(database_url: str) -> None:
    name = make_url(database_url).database
    admin = await asyncpg.connect(postgres_dsn(database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_namespace(redis_url: str, namespace: str) -> None:
    """Remove every key of a namespace: ours (`ns:…`) and the queue's (`streaq:ns…`)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        for pattern in (f"streaq:{namespace}*", f"{namespace}:*"):
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
