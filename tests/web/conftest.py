"""Fixtures the web page tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from computebill.config import Settings, load_settings
from tests.support.pages import Browser, browser_for


@pytest.fixture
async def https_browser(settings: Settings) -> AsyncIterator[Browser]:
    https_settings = load_settings(
        **settings.model_dump(exclude={"public_base_url"}),
        public_base_url="https://cloud.example.com",
    )
    async for value in browser_for(https_settings, base_url="https://cloud.example.com"):
        yield value
