"""Real services for the tests.

PostgreSQL and Redis come from `DATABASE_URL`/`REDIS_URL` when they are set (CI and this machine
run both on 127.0.0.1), else from embedded servers started once for the session. Each run gets its
own database, migrated with Alembic, and its own Redis namespace; both are removed afterwards.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from computebill.app import create_app
from computebill.config import Settings, load_settings
from computebill.devserver.embedded import (
    EmbeddedPostgres,
    EmbeddedServer,
    EmbeddedValkey,
    free_port,
)
from computebill.migrations import upgrade_to_head_async
from computebill.seed import seed_database
from tests.support import Api, api_for, create_database, delete_namespace, drop_database, serve

TEST_JWT_SECRET = "test-jwt-secret-0123456789abcdef-0123456789"
TEST_TOKEN_PEPPER = "test-token-pepper-0123456789abcdef-01234567"


@pytest.fixture(scope="session")
def service_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(PostgreSQL URL, Redis URL) of real servers for this test session."""
    configured = load_settings()
    started: list[EmbeddedServer] = []
    database_url, redis_url = configured.database_url, configured.redis_url
    if database_url is None:
        postgres = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"), free_port())
        postgres.start()
        started.append(postgres)
        database_url = postgres.url
    if redis_url is None:
        valkey = EmbeddedValkey(tmp_path_factory.mktemp("valkey"), free_port())
        valkey.start()
        started.append(valkey)
        redis_url = valkey.url
    try:
        yield database_url, redis_url
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture(scope="session")
async def settings(service_urls: tuple[str, str]) -> AsyncIterator[Settings]:
    """Settings pointing at a fresh, migrated database and an unused Redis namespace."""
    server_url, redis_url = service_urls
    database_url = await create_database(server_url, "computebill_test")
    namespace = "test-" + str(make_url(database_url).database).rsplit("_", 1)[-1]
    test_settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_namespace=namespace,
        worker_heartbeat_seconds=1,
        log_format="console",
        jwt_secret=TEST_JWT_SECRET,
        token_pepper=TEST_TOKEN_PEPPER,
        bcrypt_rounds=4,  # the policy's cost (12) is tested on its own; the rest need speed
        # Generous limits; tests of the limits themselves set their own.
        rate_limit_login_per_ip="10000/minute",
        rate_limit_login_failures_per_account="10000/minute",
        rate_limit_signup_per_ip="10000/minute",
        rate_limit_refresh_per_session="10000/minute",
    )
    await upgrade_to_head_async(test_settings)
    await seed_database(test_settings)
    try:
        yield test_settings
    finally:
        await drop_database(database_url)
        await delete_namespace(redis_url, namespace)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for http in serve(create_app(settings)):
        yield http


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """The app over HTTP with helpers for signing up and calling as a user, and a movable clock."""
    async for value in api_for(settings):
        yield value


_addresses = itertools.count()


@pytest.fixture
def email() -> str:
    """A fresh address per test, so tests sharing the database never collide."""
    return f"user{next(_addresses)}-{secrets.token_hex(3)}@example.com"
