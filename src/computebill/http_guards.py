"""Checks every request passes before any route reads it: header size, body size and JSON
content type; and whether a request comes from this machine."""

from __future__ import annotations

import ipaddress

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from computebill.errors import problem_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"
# All request headers together, as sent (`name: value` and CRLF each). The server may accept more
# (uvicorn's httptools parser has no limit); nothing past this reaches a route. Like nginx's.
MAX_HEADER_BYTES = 32 * 1024


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; FastAPI passes HTTP exceptions through to our handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


def from_loopback(request: Request) -> bool:
    """The client (after FORWARDED_ALLOW_IPS) is on this machine."""
    try:
        return ipaddress.ip_address(request.client.host if request.client else "").is_loopback
    except ValueError:
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _header_bytes(scope: Scope) -> int:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    return sum(len(key) + len(value) + 4 for key, value in headers)


class RequestGuardMiddleware:
    """431 for request headers over their limit; 413 for a body over the limit (before reading
    it when Content-Length says so, else as soon as it is exceeded); 415 for a JSON API call
    whose body is not `application/json`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_header_bytes: int = MAX_HEADER_BYTES,
        json_prefix: str = "/api/",
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.json_prefix = json_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _header_bytes(scope) > self.max_header_bytes:
            response = problem_response(
                status=431,
                code="request_header_fields_too_large",
                detail=f"The request headers are larger than {self.max_header_bytes} bytes.",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self._refuse(scope, receive, send, too_large=True)
            return
        has_body = length is None or int(length) > 0
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if (
            has_body
            and scope["path"].startswith(self.json_prefix)
            and content_type
            not in (
                "application/json",
                "",
            )
        ):
            await self._refuse(scope, receive, send, too_large=False)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, too_large=True)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, too_large: bool) -> None:
        if too_large:
            response = problem_response(
                status=413,
                code="payload_too_large",
                detail=f"The request body is larger than {self.max_body_bytes} bytes.",
                headers={"Connection": "close"},
            )
        else:
            response = problem_response(
                status=415,
                code="unsupported_media_type",
                detail="The API accepts only application/json bodies.",
            )
        await response(scope, receive, send)
