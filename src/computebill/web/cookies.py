"""The browser's cookies: which names and attributes they carry, and the jar that collects the
Set-Cookie headers of a request for whatever response it ends with.

Session cookies are HttpOnly and SameSite=Lax (Secure and `__Host-` prefixed except on plain-http
loopback in development).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from computebill.config import Settings

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    secure: bool
    access: str
    refresh: str
    csrf: str
    # The known-device token (`auth.tokens.KnownDevices`): kept after logout, for a year.
    device: str
    # What a signed-out visitor was doing when sent to log in (`auth.intents`): half an hour.
    intent: str


def cookie_policy(settings: Settings) -> CookiePolicy:
    """Secure, `__Host-` cookies unless the platform is served over plain http on loopback."""
    url = settings.public_base_url
    secure = not (url.scheme == "http" and (url.host or "") in LOOPBACK_HOSTS)
    prefix = "__Host-" if secure else ""
    return CookiePolicy(
        secure=secure,
        access=f"{prefix}cb_access",
        refresh=f"{prefix}cb_refresh",
        csrf=f"{prefix}cb_csrf",
        device=f"{prefix}cb_device",
        intent=f"{prefix}cb_intent",
    )


def session_max_age(settings: Settings) -> int:
    """How long the session and CSRF cookies live: as long as a session can."""
    return settings.session_absolute_days * 86400


@dataclass(slots=True)
class CookieJar:
    """Cookies to set on whatever response this request ends with (a page, a redirect or an
    error page); written by `SessionCookieMiddleware`."""

    policy: CookiePolicy
    headers: list[bytes] = field(default_factory=list)

    def set(self, name: str, value: str, *, max_age: int) -> None:
        carrier = Response()
        carrier.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.policy.secure,
            httponly=True,
            samesite="lax",
        )
        self.headers.append(carrier.headers["set-cookie"].encode("latin-1"))

    def delete(self, name: str) -> None:
        self.set(name, "", max_age=0)


def cookie_jar(request: Request, settings: Settings) -> CookieJar:
    """This request's jar, created on first use."""
    jar: CookieJar | None = getattr(request.state, "cookie_jar", None)
    if jar is None:
        jar = CookieJar(cookie_policy(settings))
        request.state.cookie_jar = jar
    return jar


class SessionCookieMiddleware:
    """Adds the Set-Cookie headers a request's cookie jar collected to its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                jar: CookieJar | None = scope.get("state", {}).get("cookie_jar")
                if jar is not None and jar.headers:
                    message["headers"] = [
                        *message.get("headers", []),
                        *((b"set-cookie", header) for header in jar.headers),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_cookies)
