"""Instant revocation across processes: two real `computebill app` processes on one database and
one Redis; a session ended through one is refused on the very next request the other serves."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from computebill.config import Settings
from computebill.devserver.embedded import free_port
from tests.support.platform import Process, wait_healthy
from tests.support.settings import settings_environment

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def app_urls(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two app processes on the test database and Redis namespace (started once for the
    module)."""
    ports = [free_port(), free_port()]
    log = tmp_path_factory.mktemp("two-apps") / "apps.log"
    env = settings_environment(settings)
    apps = [
        Process([sys.executable, "-m", "computebill", "app", "--port", str(port)], env, log)
        for port in ports
    ]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, app in zip(urls, apps, strict=True):
            wait_healthy(f"{url}/healthz", log, app, within=120)
        yield urls
    finally:
        for app in apps:
            app.stop()


@pytest.fixture
async def apps(app_urls: list[str]) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=app_urls[0], timeout=30) as first,
        httpx.AsyncClient(base_url=app_urls[1], timeout=30) as second,
    ):
        yield first, second


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def me(app: httpx.AsyncClient, pair: dict[str, Any]) -> int:
    return (await app.get("/api/v1/me", headers=bearer(pair))).status_code


async def log_in(app: httpx.AsyncClient, email: str, device: str) -> dict[str, Any]:
    answer = await app.post(
        "/api/v1/auth/login",
        json={"email": email, "password": PASSWORD},
        headers={"User-Agent": device},
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_a_session_revoked_through_one_process_is_refused_by_the_other_at_once(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], email: str
) -> None:
    first, second = apps
    signed_up = await first.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert signed_up.status_code == 201, signed_up.text
    laptop = await log_in(first, email, "laptop")
    phone = await log_in(second, email, "phone")
    # Both processes have just accepted the phone's token.
    assert [await me(first, phone), await me(second, phone)] == [200, 200]
    sessions = (await first.get("/api/v1/auth/sessions", headers=bearer(phone))).json()
    phone_session = next(s["id"] for s in sessions["sessions"] if s["current"])

    ended = await first.delete(f"/api/v1/auth/sessions/{phone_session}", headers=bearer(laptop))
    assert ended.status_code == 204

    assert await me(second, phone) == 401  # the very next request, on the other process
    refreshed = await second.post(
        "/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert [await me(first, laptop), await me(second, laptop)] == [200, 200]


async def test_a_reused_refresh_token_ends_its_session_on_every_process_at_once(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient], email: str
) -> None:
    first, second = apps
    signed_up = await first.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert signed_up.status_code == 201, signed_up.text
    spent = signed_up.json()
    rotated = await second.post(
        "/api/v1/auth/refresh", json={"refresh_token": spent["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
    current = rotated.json()
    assert current["user"] == spent["user"]
    newer = await first.post(
        "/api/v1/auth/refresh", json={"refresh_token": current["refresh_token"]}
    )
    assert newer.status_code == 200, newer.text
    latest = newer.json()
    assert [await me(first, latest), await me(second, latest)] == [200, 200]

    # The first token, spent two rotations ago, is presented again: reuse ends the family.
    reused = await first.post(
        "/api/v1/auth/refresh", json={"refresh_token": spent["refresh_token"]}
    )
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh_token_reused"

    assert await me(second, latest) == 401  # its newest access token, on the other process
    again = await second.post(
        "/api/v1/auth/refresh", json={"refresh_token": latest["refresh_token"]}
    )
    assert again.status_code == 401
