"""Fixtures of the payment tests; the platform they run against is tests/conftest.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from computebill.config import Settings
from computebill.devserver.scratch import Sessions, database


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Sessions]:
    """Sessions on the test database, to check what the app and the worker stored."""
    async with database(settings) as sessions:
        yield sessions
