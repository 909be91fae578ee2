"""Fixtures of the instances tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from computebill.config import Settings
from tests.support.state_machines import Database, private_database


@pytest.fixture(scope="module")
def database(settings: Settings, service_urls: tuple[str, str]) -> Iterator[Database]:
    """A database of the module's own (each state machine's), out of reach of any worker's
    sweep and of other modules' passes and sweeps."""
    with private_database(settings, service_urls[0]) as own:
        yield own
