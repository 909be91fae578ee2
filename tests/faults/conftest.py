"""Fixtures of the fault suites: a Redis and a database of the test's own, or an embedded
PostgreSQL of the test's own to stop and start (tests/faults/cluster.py holds the processes they
run)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from computebill.config import Settings
from computebill.devserver.embedded import EmbeddedPostgres, free_port
from computebill.migrations import upgrade_to_head_async
from computebill.seed import seed_database
from tests.faults.cluster import RedisServer
from tests.support.database import own_database


class Server(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


def serving(server: S) -> Iterator[S]:
    """A fixture's server, started, and stopped after its test."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    yield from serving(RedisServer(tmp_path / "redis"))


@pytest.fixture
async def fault_settings(
    settings: Settings, service_urls: tuple[str, str], redis_server: RedisServer
) -> AsyncIterator[Settings]:
    """The session's settings with a database of the test's own (dropped afterwards) and the
    test's own Redis."""
    on_own_redis = settings.model_copy(update={"redis_url": redis_server.url})
    async with own_database(on_own_redis, service_urls[0]) as own:
        yield own


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    yield from serving(EmbeddedPostgres(tmp_path / "postgres" / "data", free_port()))


@pytest.fixture
async def outage_settings(
    settings: Settings, postgres: EmbeddedPostgres, redis_server: RedisServer
) -> Settings:
    """The session's settings on the embedded server's database and the test's own Redis."""
    own = settings.model_copy(
        update={
            "database_url": postgres.url,
            "redis_url": redis_server.url,
            "redis_namespace": "pg-outage",
        }
    )
    await upgrade_to_head_async(own)
    await seed_database(own)
    return own  # the server and the Redis go with their fixtures
