"""Fixtures of the auto-recharge tests; the platform they run against is tests/conftest.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from computebill.config import Settings
from computebill.devserver.scratch import Sessions, database
from computebill.payments.gateway import StripeGateway
from tests.support.database import own_database
from tests.support.http import Api, api_for
from tests.support.stripe import EmulatorProcess, with_stripe


@pytest.fixture(scope="session")
async def sessions(settings: Settings) -> AsyncIterator[Sessions]:
    """Sessions on the test database, each its own transaction (for concurrent checks)."""
    async with database(settings) as made:
        yield made


@pytest.fixture(scope="module")
async def private_sessions(
    settings: Settings, service_urls: tuple[str, str]
) -> AsyncIterator[Sessions]:
    """Sessions on a database of the module's own, for tests that hold a rule between two steps:
    the session's platform runs a worker whose checks of every rule in the shared database would
    re-arm or charge it in between."""
    async with own_database(settings, service_urls[0]) as own, database(own) as made:
        yield made


@pytest.fixture(scope="module")
def gateway(settings: Settings, checkout_emulator: EmulatorProcess) -> StripeGateway:
    """The platform's Stripe gateway, talking to the emulator (its webhooks reach no app: the
    tests deliver the events they read from it)."""
    return StripeGateway(
        with_stripe(settings, api_base=checkout_emulator.base_url, webhook_secret=None)
    )


@pytest.fixture
async def stripe_api(settings: Settings, checkout_emulator: EmulatorProcess) -> AsyncIterator[Api]:
    """The app in this process, its Stripe the emulator (no webhooks reach it)."""
    async for value in api_for(
        with_stripe(settings, api_base=checkout_emulator.base_url, webhook_secret=None)
    ):
        yield value
