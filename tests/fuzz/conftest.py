"""Fixtures of the fuzz tests: the platform as processes, and a user and an admin on it
(tests/fuzz/server.py starts them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from computebill.config import Settings
from tests.fuzz.server import (
    Server,
    User,
    create_api_key,
    grant_admin,
    serve_platform,
    sign_up,
)
from tests.support.database import own_database


@pytest.fixture(scope="session")
async def server(
    settings: Settings,
    service_urls: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Server]:
    """On a database and Redis namespace of its own: its worker (and its sweeps) must never
    take the jobs of another platform running in the same test session."""
    async with own_database(settings, service_urls[0]) as own:
        for server in serve_platform(own, tmp_path_factory.mktemp("fuzz")):
            yield server


@pytest.fixture(scope="session")
def user(server: Server) -> User:
    return sign_up(server)


@pytest.fixture(scope="session")
def admin(server: Server) -> User:
    account = sign_up(server, "fuzz-admin")
    grant_admin(server, account)
    return account


@pytest.fixture(scope="session")
def key_holder(server: Server) -> User:
    """A customer calling with an API key that holds every scope, not with a session."""
    return create_api_key(server, sign_up(server, "fuzz-key"))
