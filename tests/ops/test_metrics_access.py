"""Who may read /metrics on the app port (METRICS_TOKEN, else loopback only) and whether the API
docs are served (API_DOCS_ENABLED)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from pydantic import SecretStr

from computebill.app import create_app
from computebill.config import Settings

Client = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def client_of(settings: Settings) -> Client:
    @asynccontextmanager
    async def client(
        peer: str = "127.0.0.1", **changes: object
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings.model_copy(update=changes))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(peer, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield http

    return client


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1"])
async def test_without_a_token_loopback_peers_read_the_metrics(
    client_of: Client, peer: str
) -> None:
    async with client_of(peer) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert "computebill_http_requests_total" in answer.text


async def test_without_a_token_other_peers_find_no_metrics(client_of: Client) -> None:
    async with client_of("203.0.113.7") as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "There is nothing at this address."  # as if none


async def test_a_forwarded_outside_client_is_not_loopback(client_of: Client) -> None:
    """A proxy on loopback forwarding an outside client does not make it local."""
    async with client_of("127.0.0.1", forwarded_allow_ips="127.0.0.1") as http:
        answer = await http.get("/metrics", headers={"x-forwarded-for": "203.0.113.7"})
    assert answer.status_code == 404


@pytest.mark.parametrize("peer", ["127.0.0.1", "203.0.113.7"])
async def test_with_a_token_only_its_bearer_reads_the_metrics(client_of: Client, peer: str) -> None:
    token = SecretStr("metrics-token-0123456789")
    async with client_of(peer, metrics_token=token) as http:
        missing = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"authorization": "Bearer not-the-token"})
        right = await http.get(
            "/metrics", headers={"authorization": "Bearer metrics-token-0123456789"}
        )
    for refused in (missing, wrong):
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "metrics-token-0123456789" not in refused.text
    assert right.status_code == 200


async def test_the_api_docs_can_be_switched_off(client_of: Client) -> None:
    async with client_of() as http:
        assert (await http.get("/api/docs")).status_code == 200
        assert (await http.get("/api/openapi.json")).status_code == 200
    async with client_of(api_docs_enabled=False) as http:
        assert (await http.get("/api/docs")).status_code == 404
        assert (await http.get("/api/openapi.json")).status_code == 404
