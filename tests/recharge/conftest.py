"""Fixtures of the auto-recharge tests; the platform they run against is tests/conftest.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from computebill.config import Settings
from computebill.devserver.scratch import Sessions, database


@pytest.fixture(scope="session")
async def sessions(settings: Settings) -> AsyncIterator[Sessions]:
    """Sessions on the test database, each its own transaction (for concurrent checks)."""
    async with database(settings) as made:
        yield made
