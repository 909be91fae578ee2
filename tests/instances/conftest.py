"""Fixtures of the instances tests; the platform they run against is tests/conftest.py's."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from computebill.config import Settings
from tests.support.pages import Browser, browser_for
from tests.support.state_machines import Database, private_database


@pytest.fixture
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    """On a queue no worker reads (other tests leave platforms running in the session): the
    test plays the worker, so what the pages ask for waits until the test runs it."""
    quiet = settings.model_copy(
        update={"redis_namespace": f"{settings.redis_namespace}-instances-{secrets.token_hex(3)}"}
    )
    async for value in browser_for(quiet):
        yield value


@pytest.fixture(scope="module")
def database(settings: Settings, service_urls: tuple[str, str]) -> Iterator[Database]:
    """A database of the module's own (each state machine's), out of reach of any worker's
    sweep and of other modules' passes and sweeps."""
    with private_database(settings, service_urls[0]) as own:
        yield own
