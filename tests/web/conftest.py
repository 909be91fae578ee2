from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from computebill.config import Settings
from tests.payments.conftest import with_stripe
from tests.stripe_emulator.support import EmulatorProcess
from tests.web.support import Browser, browser_for


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
