"""Real services for the tests, as fixtures (the helpers behind them are in tests/support).

PostgreSQL and Redis come from `DATABASE_URL`/`REDIS_URL` when they are set (CI and this machine
run both on 127.0.0.1), else from embedded servers started once for the session. Each run gets its
own database, migrated with Alembic, and its own Redis namespace; both are removed afterwards.

Two kinds of fixture stand on them: `db_session`, a session rolled back after the test, for fast
service tests; and the app in-process (`client`, `api`, `browser`) or as real processes with the
Stripe emulator (`platform`, `http`), for tests of the whole path.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.app import create_app
from computebill.config import Settings, load_settings
from computebill.db import create_engine
from computebill.devserver.embedded import (
    EmbeddedPostgres,
    EmbeddedServer,
    EmbeddedValkey,
    free_port,
)
from computebill.devserver.scratch import create_database, delete_namespace, drop_database
from computebill.migrations import upgrade_to_head_async
from computebill.seed import seed_database
from tests.support.database import rolled_back_session
from tests.support.http import Api, AppClient, api_for, serve
from tests.support.pages import Browser, browser_for
from tests.support.platform import Platform, running_platform
from tests.support.settings import TEST_JWT_SECRET, TEST_TOKEN_PEPPER
from tests.support.stripe import EmulatorProcess, with_stripe


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
        api_key_rate_limit_per_minute=100_000,
        rate_limit_verification_resend_per_account="10000/minute",
        rate_limit_password_reset_per_ip="10000/minute",
        rate_limit_password_reset_per_address="10000/minute",
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


# Fast service tests: a session whose writes are rolled back ----------------------------------


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database, for the whole session."""
    test_engine = create_engine(settings)
    try:
        yield test_engine
    finally:
        await test_engine.dispose()


@pytest.fixture
async def db_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session on the test database inside a transaction that is rolled back after the test
    (a `commit()` in it only releases a savepoint): a service test leaves nothing behind. Not
    for what another connection must see, such as the app serving a request."""
    async with rolled_back_session(engine) as session:
        yield session


# Page tests: a browser without a browser -----------------------------------------------------


@pytest.fixture
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    async for value in browser_for(settings):
        yield value


@pytest.fixture
async def other_browser(settings: Settings) -> AsyncIterator[Browser]:
    async for value in browser_for(settings):
        yield value


@pytest.fixture(scope="session")
def checkout_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The Stripe emulator as a process, for the cart and checkout pages (no webhooks: the
    success page fulfils by asking Stripe)."""
    emulator = EmulatorProcess(
        tmp_path_factory.mktemp("web-emulator"), "--async-settle-delay", "3"
    ).start()
    yield emulator
    emulator.stop()


@pytest.fixture
async def shop_browser(
    settings: Settings, checkout_emulator: EmulatorProcess
) -> AsyncIterator[Browser]:
    """A browser on an app whose Stripe is the emulator."""
    async for value in browser_for(
        with_stripe(settings, api_base=checkout_emulator.base_url, webhook_secret=None)
    ):
        yield value


# The platform as it runs for real ------------------------------------------------------------


@pytest.fixture(scope="session")
def platform(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The app and a worker as processes, and the Stripe emulator delivering signed webhooks to
    the app, on the test database (started once, by the first test that asks)."""
    with running_platform(settings, tmp_path_factory.mktemp("platform")) as running:
        yield running


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the platform's app process."""
    async with AppClient(platform.settings, base_url=platform.base_url, timeout=30) as client:
        yield client
