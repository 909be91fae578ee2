"""Fixtures of the instance page tests; the platform they run against is tests/conftest.py's."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from computebill.config import Settings
from tests.support.pages import Browser, browser_for


@pytest.fixture
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    """On a queue no worker reads (other tests leave platforms running in the session): the
    test plays the worker, so what the pages ask for waits until the test runs it."""
    quiet = settings.model_copy(
        update={"redis_namespace": f"{settings.redis_namespace}-instances-{secrets.token_hex(3)}"}
    )
    async for value in browser_for(quiet):
        yield value
