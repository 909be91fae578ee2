from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from computebill.config import Settings
from tests.web.support import Browser, browser_for


@pytest.fixture
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    async for value in browser_for(settings):
        yield value


@pytest.fixture
async def other_browser(settings: Settings) -> AsyncIterator[Browser]:
    async for value in browser_for(settings):
        yield value
