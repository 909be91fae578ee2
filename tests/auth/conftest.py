from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from computebill.app import create_app
from computebill.config import Settings
from tests.support import MovableClock, serve


@dataclass
class Api:
    """The app over HTTP, with a clock the test moves."""

    http: httpx.AsyncClient
    clock: MovableClock

    async def sign_up(self, email: str, password: str = "correct horse battery") -> dict[str, Any]:
        answer = await self.http.post(
            "/api/v1/auth/signup", json={"email": email, "password": password, "name": "Test"}
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    async def log_in(
        self, email: str, password: str = "correct horse battery", *, device: str = "laptop"
    ) -> httpx.Response:
        return await self.http.post(
            "/api/v1/auth/login",
            json={"email": email, "password": password},
            headers={"user-agent": device},
        )

    async def refresh(self, token: str) -> httpx.Response:
        return await self.http.post("/api/v1/auth/refresh", json={"refresh_token": token})

    async def get(self, path: str, access_token: str) -> httpx.Response:
        return await self.http.get(path, headers={"authorization": f"Bearer {access_token}"})

    async def call(
        self, method: str, path: str, access_token: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        return await self.http.request(
            method, path, json=body, headers={"authorization": f"Bearer {access_token}"}
        )


async def api_for(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async for http in serve(app):
        clock = MovableClock()
        app.state.clock = clock
        yield Api(http=http, clock=clock)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async for value in api_for(settings):
        yield value


_counter = iter(range(1_000_000))


@pytest.fixture
def email() -> str:
    """A fresh address per test, so tests sharing the database never collide."""
    return f"user{next(_counter)}-{id(object())}@example.com"
