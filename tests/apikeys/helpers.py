"""Making API keys through the API, as a signed-in session does."""

from __future__ import annotations

from typing import Any

from tests.support.http import Api

ALL_SCOPES = ["read", "instances:write", "billing:write"]


async def create_key(
    api: Api, access_token: str, scopes: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"name": "ci", "scopes": ALL_SCOPES if scopes is None else scopes} | extra
    answer = await api.call("POST", "/api/v1/api-keys", access_token, body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def list_keys(api: Api, access_token: str) -> list[dict[str, Any]]:
    answer = await api.get("/api/v1/api-keys", access_token)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["api_keys"])
