"""Which client a request comes from, for the per-IP limits and the audit trail: a real
`computebill app` process believes X-Forwarded-For only from the proxies in FORWARDED_ALLOW_IPS
(none by default), even from loopback."""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from computebill.auth.models import AuthEvent
from computebill.config import Settings
from computebill.db import create_engine
from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import delete_namespace
from tests.support.platform import Process, wait_healthy
from tests.support.settings import settings_environment

pytestmark = pytest.mark.slow


async def _running_app(settings: Settings, log: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A `computebill app` process with these settings, its own Redis namespace and a per-IP
    login limit of three a minute."""
    namespace = f"{settings.redis_namespace}-fwd-{secrets.token_hex(3)}"
    limited = settings.model_copy(
        update={"redis_namespace": namespace, "rate_limit_login_per_ip": "3/minute"}
    )
    environment = settings_environment(limited)
    if not limited.forwarded_allow_ips:
        del environment["FORWARDED_ALLOW_IPS"]  # unset, as by default (Uvicorn reads it too)
    port = free_port()
    app = Process(
        [sys.executable, "-m", "computebill", "app", "--port", str(port)], environment, log
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", log, app, within=120)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield http
    finally:
        app.stop()
        await delete_namespace(settings.required_redis_url, namespace)


async def _log_in_as(http: httpx.AsyncClient, forwarded_for: str) -> int:
    answer = await http.post(
        "/api/v1/auth/login",
        json={"email": "nobody@example.com", "password": "not the password"},
        headers={"x-forwarded-for": forwarded_for},
    )
    return answer.status_code


@pytest.fixture
async def untrusting(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    assert settings.forwarded_allow_ips == ""  # the default
    async for http in _running_app(settings, tmp_path / "app.log"):
        yield http


@pytest.fixture
async def behind_proxy(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    trusting = settings.model_copy(update={"forwarded_allow_ips": "127.0.0.1"})
    async for http in _running_app(trusting, tmp_path / "app.log"):
        yield http


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    untrusting: httpx.AsyncClient,
) -> None:
    """Every attempt names another address, but all come from 127.0.0.1, which is limited."""
    statuses = [await _log_in_as(untrusting, f"203.0.113.{n}") for n in range(4)]
    assert statuses == [401, 401, 401, 429]


async def test_a_listed_proxy_is_believed_for_limits_and_the_audit_trail(
    behind_proxy: httpx.AsyncClient, settings: Settings
) -> None:
    client = f"198.51.100.{secrets.randbelow(250) + 1}"
    others = [await _log_in_as(behind_proxy, f"203.0.113.{n}") for n in range(4)]
    assert others == [401, 401, 401, 401]  # four clients, one attempt each
    # The proxy appends the peer it saw; what the client itself sent before is not believed.
    mine = [await _log_in_as(behind_proxy, f"10.9.9.{n}, {client}") for n in range(4)]
    assert mine == [401, 401, 401, 429]

    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            audited = await connection.scalar(
                select(AuthEvent.ip_address).where(AuthEvent.ip_address == client).limit(1)
            )
    finally:
        await engine.dispose()
    assert audited == client
