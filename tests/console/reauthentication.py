"""The recent-login rule of an admin's destructive form, as the console's page tests check it."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.markup import elements
from tests.support.pages import PASSWORD, Browser


async def submit_with_password(
    browser: Browser, path: str, data: dict[str, Any], *, form_page: str
) -> httpx.Response:
    """Post a form of a session whose login is older than 15 minutes: refused without the
    password and with a wrong one (checked here), then sent with the right one (answered)."""
    stale = await browser.submit(path, data, form_page=form_page)
    assert stale.status_code == 403
    assert "go back to the form and enter your password" in stale.text
    (back,) = elements(stale.text, "data-back-to-form")
    assert back.attrs["href"] == form_page
    wrong = await browser.submit(path, data | {"password": "nope"}, form_page=form_page)
    assert wrong.status_code == 403
    assert "The current password is wrong." in wrong.text
    return await browser.submit(path, data | {"password": PASSWORD}, form_page=form_page)
