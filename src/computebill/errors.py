"""One error base class with a status code, and handlers that answer every error as problem+json."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from computebill.web import templates

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://computebill.dev/problems/"

log = structlog.get_logger(__name__)


class AppError(Exception):
    """An error the client can act on. Subclasses set `status` and `code`.

    A subclass that sets `keeps_writes` is a "commit, then raise" error: the unit of work commits
    what the request or job wrote before it (an audit event, a revoked session, a note on an
    order) and then lets the error answer. Every other error rolls the transaction back."""

    status: int = 400
    code: str = "bad_request"
    title: str | None = None
    keeps_writes: bool = False

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        # Members of the problem beside the standard ones (RFC 9457 §3.2), for programs to act
        # on: a 402's shortfall, say.
        self.extensions = extensions


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


# What a client is told when PostgreSQL or Redis cannot serve: the same, and when to try again.
UNAVAILABLE_DETAIL = "A service the platform depends on is unavailable; try again shortly."
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


class DependencyUnavailable(AppError):
    status = 503
    code = "service_unavailable"

    def __init__(self, detail: str = UNAVAILABLE_DETAIL) -> None:
        super().__init__(detail, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)})


# Everything else is a page: its errors are pages too (in the site's layout, never a trace).
NON_PAGE_PREFIXES = (
    "/api/",
    "/webhooks/",
    "/.well-known/",
    "/static/",
    "/healthz",
    "/readyz",
    "/metrics",
)


def is_page_request(request: Request) -> bool:
    return not request.url.path.startswith(NON_PAGE_PREFIXES)


def _form_page(request: Request) -> str | None:
    """The page a refused form was sent from (its Referer, on this site only), to go back to
    and fill in again."""
    if request.method in ("GET", "HEAD"):
        return None
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc or not referer.path.startswith("/"):
        return None
    return referer.path + (f"?{referer.query}" if referer.query else "")


def problem_response(
    *,
    status: int,
    code: str,
    detail: str,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        **(extensions or {}),
        "type": PROBLEM_TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


def error_response(
    request: Request,
    *,
    status: int,
    code: str,
    detail: str,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response:
    """problem+json for programs; the error page for a browser on a page."""
    if is_page_request(request):
        return templates.TemplateResponse(
            request,
            "error.html",
            {
                "status": status,
                "title": title or HTTPStatus(status).phrase,
                "detail": detail,
                "visitor": getattr(request.state, "visitor", None),
                "form_page": _form_page(request),
            },
            status_code=status,
            headers=headers,
        )
    return problem_response(
        status=status,
        code=code,
        detail=detail,
        title=title,
        errors=errors,
        headers=headers,
        extensions=extensions,
    )


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return error_response(
        request,
        status=exc.status,
        code=exc.code,
        detail=exc.detail,
        title=exc.title,
        errors=exc.errors,
        headers=exc.headers,
        extensions=exc.extensions,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "There is nothing at this address."
    return error_response(
        request,
        status=exc.status_code,
        code=_HTTP_CODES.get(exc.status_code, "http_error"),
        detail=detail,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    return error_response(
        request,
        status=422,
        code="validation_error",
        detail="The request has invalid fields.",
        errors=errors,
    )


async def _dependency_down(request: Request, exc: Exception) -> Response:
    log.warning("dependency_unavailable", error_type=type(exc).__name__, error=str(exc)[:200])
    return error_response(
        request,
        status=503,
        code="service_unavailable",
        detail=UNAVAILABLE_DETAIL,
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )


# SQLSTATE classes of a server that cannot serve now: connection exceptions (08) and operator
# intervention (57: shutting down, starting up, restarted).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57")


async def _database_error(request: Request, exc: Exception) -> Response:
    """A database error is a 503 when the server is going away or coming back (clients and
    Stripe retry), and an internal error otherwise."""
    assert isinstance(exc, sqlalchemy.exc.DBAPIError)
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if exc.connection_invalidated or sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASSES):
        return await _dependency_down(request, exc)
    return await _unhandled_error(request, exc)


async def _client_gone(_: Request, __: Exception) -> Response:
    # The client hung up while sending its body: nobody reads this answer, and it is no fault.
    log.info("client_disconnected")
    return Response(status_code=400)


async def _unhandled_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return error_response(
        request,
        status=500,
        code="internal_error",
        detail="Something went wrong on our side. It has been logged; please try again.",
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # The database (or Redis) cannot be reached: a 503, so clients and Stripe try again later.
    for unavailable in (
        ConnectionError,
        TimeoutError,
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.TimeoutError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    ):
        app.add_exception_handler(unavailable, _dependency_down)
    app.add_exception_handler(sqlalchemy.exc.DBAPIError, _database_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unhandled_error)
