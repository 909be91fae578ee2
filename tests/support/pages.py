"""A browser without a browser: an HTTP client that keeps cookies and fills in the CSRF token,
for page tests that do not need Chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from computebill.app import create_app
from computebill.config import Settings
from computebill.state import app_state
from computebill.web.cookies import cookie_policy
from tests.support.clock import MovableClock
from tests.support.http import own_limits, serve
from tests.support.mailbox import VERIFY_EMAIL, emailed_token

PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Browser:
    app: FastAPI
    http: httpx.AsyncClient
    clock: MovableClock

    @property
    def settings(self) -> Settings:
        return app_state(self.app).settings

    @property
    def csrf_token(self) -> str:
        token = self.http.cookies.get(cookie_policy(app_state(self.app).settings).csrf)
        assert token, "no CSRF cookie yet: load a page first"
        return token

    @property
    def access_token(self) -> str:
        """The access token of the session this browser is signed in with."""
        token = self.http.cookies.get(cookie_policy(app_state(self.app).settings).access)
        assert token, "not signed in"
        return token

    async def page(self, path: str) -> httpx.Response:
        return await self.http.get(path)

    async def submit(
        self, path: str, data: dict[str, Any] | None = None, *, form_page: str | None = None
    ) -> httpx.Response:
        """Post a form the way a browser does: with the CSRF token the page carried, and the
        page as the Referer."""
        page = await self.http.get(form_page or path)
        match = CSRF_INPUT.search(page.text)
        assert match, f"{form_page or path} has no CSRF field"
        return await self.http.post(
            path,
            data={"csrf_token": match.group(1), **(data or {})},
            headers={"referer": str(page.url)},
        )

    async def sign_up(
        self, email: str, password: str = PASSWORD, *, verify: bool = True
    ) -> httpx.Response:
        """Sign up through the page, then (unless `verify` is False) follow the e-mailed link
        and confirm on its page, as the owner of the address does."""
        answer = await self.submit(
            "/signup", {"email": email, "password": password, "name": "Test User"}
        )
        assert answer.status_code == 303, answer.text
        if verify:
            await self.verify_email(email)
        return answer

    async def verify_email(self, email: str) -> None:
        """Open the link e-mailed to `email` and press its button."""
        token = await emailed_token(self.settings, email, VERIFY_EMAIL)
        confirmed = await self.submit(
            "/verify-email", {"token": token}, form_page=f"/verify-email?token={token}"
        )
        assert confirmed.status_code == 200, confirmed.text
        assert 'data-verify-email="verified"' in confirmed.text, confirmed.text

    async def log_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.submit("/login", {"email": email, "password": password})


async def browser_for(
    settings: Settings, *, base_url: str = "http://testserver"
) -> AsyncIterator[Browser]:
    app = create_app(settings)
    async for http in serve(app):
        http.base_url = httpx.URL(base_url)
        clock = MovableClock()
        app_state(app).clock = clock
        yield Browser(app=app, http=http, clock=clock)


async def browser_with_limits(settings: Settings, **limits: str) -> AsyncIterator[Browser]:
    """`browser_for` with these rate limits (`own_limits`)."""
    async with own_limits(settings, **limits) as limited:
        async for browser in browser_for(limited):
            yield browser
