"""Every error path answers problem+json, and every answer carries a request id."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel, Field

from computebill.app import create_app
from computebill.config import Settings
from computebill.errors import AppError
from tests.support.http import serve

PROBLEM = "application/problem+json"


class WidgetExists(AppError):
    status = 409
    code = "widget_exists"


class Widget(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(ge=1, le=8)


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    router = APIRouter()

    @router.post("/api/v1/widgets")
    async def create_widget(widget: Widget) -> Widget:
        return widget

    @router.post("/api/v1/widgets/conflict")
    async def conflicting() -> None:
        raise WidgetExists("That widget already exists.")

    app.include_router(router)
    async for client in serve(app):
        yield client


async def test_unknown_path_is_a_problem_json_404(app_client: httpx.AsyncClient) -> None:
    answer = await app_client.get("/api/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["status"] == 404
    assert body["code"] == "not_found"
    assert body["type"].endswith("/not_found")
    assert body["title"] == "Not Found"


async def test_wrong_method_is_a_problem_json_405(app_client: httpx.AsyncClient) -> None:
    answer = await app_client.delete("/healthz")
    assert answer.status_code == 405
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["code"] == "method_not_allowed"


async def test_invalid_fields_are_named_in_a_422(app_client: httpx.AsyncClient) -> None:
    answer = await app_client.post("/api/v1/widgets", json={"name": "", "count": 9})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["code"] == "validation_error"
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"body.name", "body.count"}


async def test_malformed_json_is_a_422_not_a_500(app_client: httpx.AsyncClient) -> None:
    answer = await app_client.post(
        "/api/v1/widgets", content=b'{"name": "x",', headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["errors"][0]["type"] == "json_invalid"


async def test_domain_errors_keep_their_status_and_code(app_client: httpx.AsyncClient) -> None:
    answer = await app_client.post("/api/v1/widgets/conflict")
    assert answer.status_code == 409
    assert answer.json()["detail"] == "That widget already exists."
    assert answer.json()["code"] == "widget_exists"
    assert answer.json()["type"].endswith("/widget_exists")


@pytest.mark.parametrize(
    ("path", "content_type"), [("/api/v1/boom", PROBLEM), ("/boom", "text/html; charset=utf-8")]
)
async def test_unexpected_errors_are_500_without_leaking_details(
    settings: Settings, path: str, content_type: str
) -> None:
    """A program gets problem+json, a browser on a page the error page; neither sees details."""
    app = create_app(settings)

    @app.get(path)
    async def boom() -> None:
        raise RuntimeError("secret connection string postgres://u:p@h/db")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get(path)
    assert answer.status_code == 500
    assert answer.headers["content-type"] == content_type
    assert "secret" not in answer.text
    assert "Traceback" not in answer.text
    if content_type == PROBLEM:
        assert answer.json()["code"] == "internal_error"
    else:
        assert "Something went wrong on our side" in answer.text


async def test_a_request_id_is_made_when_missing(app_client: httpx.AsyncClient) -> None:
    first = await app_client.get("/healthz")
    second = await app_client.get("/healthz")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_sane_request_id_is_kept_and_a_hostile_one_replaced(
    app_client: httpx.AsyncClient,
) -> None:
    kept = await app_client.get("/healthz", headers={"x-request-id": "lb-2f1c9a77-0001"})
    assert kept.headers["x-request-id"] == "lb-2f1c9a77-0001"
    hostile = await app_client.get("/healthz", headers={"x-request-id": 'x" onmouseover=1 <b>'})
    assert hostile.headers["x-request-id"] != 'x" onmouseover=1 <b>'
    assert len(hostile.headers["x-request-id"]) == 32


async def test_error_answers_carry_the_request_id_too(app_client: httpx.AsyncClient) -> None:
    answer = await app_client.get("/nowhere", headers={"x-request-id": "trace-123456789"})
    assert answer.status_code == 404
    assert answer.headers["x-request-id"] == "trace-123456789"


async def test_api_docs_and_openapi_are_served(app_client: httpx.AsyncClient) -> None:
    docs = await app_client.get("/api/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = (await app_client.get("/api/openapi.json")).json()
    assert "/readyz" in schema["paths"]
    assert "/metrics" not in schema["paths"]


async def test_a_body_over_the_limit_is_refused_before_it_is_read(
    app_client: httpx.AsyncClient,
) -> None:
    answer = await app_client.post(
        "/api/v1/widgets",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["code"] == "payload_too_large"


async def test_a_streamed_body_over_the_limit_is_cut_off(app_client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 65536  # 2.5 MiB in all, with no Content-Length

    answer = await app_client.post(
        "/api/v1/widgets", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413


async def test_the_json_api_refuses_other_content_types(app_client: httpx.AsyncClient) -> None:
    body = b'{"email": "a@example.com", "password": "correct horse battery"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        answer = await app_client.post(
            "/api/v1/auth/login", content=body, headers={"content-type": content_type}
        )
        assert answer.status_code == 415
        assert answer.json()["code"] == "unsupported_media_type"


async def test_invalid_utf8_json_is_a_clean_400(app_client: httpx.AsyncClient) -> None:
    answer = await app_client.post(
        "/api/v1/auth/login",
        content=b'{"email": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["code"] == "bad_request"
