"""Fixtures of the fault suites: a Redis and a database of the test's own (tests/faults/cluster.py
holds the processes they run)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from computebill.config import Settings
from tests.faults.cluster import RedisServer
from tests.support.database import own_database


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def fault_settings(
    settings: Settings, service_urls: tuple[str, str], redis_server: RedisServer
) -> AsyncIterator[Settings]:
    """The session's settings with a database of the test's own (dropped afterwards) and the
    test's own Redis."""
    on_own_redis = settings.model_copy(update={"redis_url": redis_server.url})
    async with own_database(on_own_redis, service_urls[0]) as own:
        yield own
