"""The app served in this process, and `Api`: an HTTP client with helpers for signing up and
calling as a user, and a clock the test moves."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from computebill.app import create_app
from computebill.config import Settings
from computebill.devserver.scratch import delete_namespace
from computebill.state import app_state
from tests.support.clock import MovableClock
from tests.support.mailbox import verify_address


class AppClient(httpx.AsyncClient):
    """An HTTP client for an app running as a process, with the settings it runs on: a test
    reads what the app wrote (the e-mails in its outbox) from their database."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(**options)
        self.settings = settings


async def serve(app: FastAPI) -> AsyncIterator[AppClient]:
    """The app with its lifespan running, and an HTTP client speaking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        settings = app_state(app).settings
        async with AppClient(settings, transport=transport, base_url="http://testserver") as client:
            yield client


@asynccontextmanager
async def in_process(settings: Settings) -> AsyncIterator[AppClient]:
    """An app built from `settings`, served in this process, its lifespan running."""
    clients = serve(create_app(settings))
    try:
        yield await anext(clients)
    finally:
        await anext(clients, None)  # the rest of the generator: the app's shutdown


@dataclass
class Api:
    """The app over HTTP, with a clock the test moves."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: MovableClock

    @property
    def settings(self) -> Settings:
        return app_state(self.app).settings

    async def sign_up(
        self, email: str, password: str = "correct horse battery", *, verify: bool = True
    ) -> dict[str, Any]:
        """A new account, its address verified through the e-mailed link unless `verify` is
        False (an account that cannot buy yet)."""
        answer = await self.http.post(
            "/api/v1/auth/signup", json={"email": email, "password": password, "name": "Test"}
        )
        assert answer.status_code == 201, answer.text
        if verify:
            await verify_address(self.http, self.settings, email)
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
        app_state(app).clock = clock
        yield Api(app=app, http=http, clock=clock)


@asynccontextmanager
async def own_limits(settings: Settings, **limits: str) -> AsyncIterator[Settings]:
    """`settings` with these rate limits, counted in a Redis namespace of their own, removed
    afterwards."""
    namespace = f"{settings.redis_namespace}-limits-{secrets.token_hex(3)}"
    try:
        yield settings.model_copy(update={"redis_namespace": namespace, **limits})
    finally:
        await delete_namespace(settings.required_redis_url, namespace)


async def api_with_limits(settings: Settings, **limits: str) -> AsyncIterator[Api]:
    """`api_for` with these rate limits (`own_limits`)."""
    async with own_limits(settings, **limits) as limited:
        async for api in api_for(limited):
            yield api
