"""Browsers signed in by cookie: the session cookies, transparent refresh, CSRF, and the visitor
every page is rendered for.

The access and refresh tokens live in HttpOnly, SameSite=Lax cookies (Secure and `__Host-`
prefixed except on plain-http loopback in development). An expired or missing access token is
replaced from the refresh cookie with the same rotation the JSON API uses. Every unsafe request
to a page must carry the CSRF token (a form field or the X-CSRF-Token header that htmx sends)
equal to the CSRF cookie, and must not come from another site (Sec-Fetch-Site, Origin).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import structlog
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from computebill.auth import service as auth_service
from computebill.auth.dependencies import ClientDep, Principal
from computebill.auth.models import User
from computebill.auth.service import AuthComponents
from computebill.auth.tokens import InvalidAccessToken
from computebill.cart.models import CartItem
from computebill.config import Settings
from computebill.deps import AuthDep, ClockDep, SessionDep, SettingsDep
from computebill.errors import AppError
from computebill.web import templates

log = structlog.get_logger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
DEFAULT_LANDING = "/dashboard"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    secure: bool
    access: str
    refresh: str
    csrf: str


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
    )


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


def _cookie_jar(request: Request, settings: Settings) -> CookieJar:
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


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who a page is for: a signed-in user (with the header's cart count) or an anonymous one."""

    principal: Principal | None
    user: User | None
    cart_count: int
    csrf_token: str

    @property
    def signed_in(self) -> bool:
        return self.principal is not None


class LoginRequired(Exception):
    """A page that needs a signed-in user; answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRejected(AppError):
    status = 403
    code = "csrf_failed"
    title = "Request refused"


def safe_next(value: str | None) -> str:
    """A local path to return to after login; anything else (another site, a scheme, `//`)
    becomes the default landing page."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_LANDING
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_LANDING
    return value


def login_url(next_path: str) -> str:
    return "/login?next=" + quote(safe_next(next_path), safe="/")


async def send_to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return redirect(login_url(exc.next_path), request)


def redirect(url: str, request: Request) -> Response:
    """See Other for a form post; htmx follows HX-Redirect instead of swapping the target."""
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _session_max_age(settings: Settings) -> int:
    return settings.session_absolute_days * 86400


def _set_session_cookies(
    request: Request, issued: auth_service.Issued, *, auth: AuthComponents, settings: Settings
) -> CookieJar:
    jar = _cookie_jar(request, settings)
    access = auth.access_tokens.issue(user_id=issued.user.id, session_id=issued.auth_session.id)
    jar.set(jar.policy.access, access, max_age=settings.access_token_ttl_seconds)
    jar.set(jar.policy.refresh, issued.refresh_token, max_age=_session_max_age(settings))
    return jar


def start_browser_session(
    request: Request, issued: auth_service.Issued, *, auth: AuthComponents, settings: Settings
) -> None:
    """Set fresh access, refresh and CSRF cookies: the cookies a browser had before signing in
    (another account's included) are all replaced, so no session can be fixed in advance."""
    jar = _set_session_cookies(request, issued, auth=auth, settings=settings)
    new_csrf = secrets.token_urlsafe(32)
    jar.set(jar.policy.csrf, new_csrf, max_age=_session_max_age(settings))
    request.state.csrf_token = new_csrf


def end_browser_session(request: Request, settings: Settings) -> None:
    jar = _cookie_jar(request, settings)
    jar.delete(jar.policy.access)
    jar.delete(jar.policy.refresh)


def refresh_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(cookie_policy(settings).refresh)


def _csrf_token(request: Request, settings: Settings) -> str:
    """The CSRF token of this browser, issuing one (with its cookie) on the first visit."""
    token: str | None = getattr(request.state, "csrf_token", None)
    if token is None:
        jar = _cookie_jar(request, settings)
        token = request.cookies.get(jar.policy.csrf)
        if not token:
            token = secrets.token_urlsafe(32)
            jar.set(jar.policy.csrf, token, max_age=_session_max_age(settings))
        request.state.csrf_token = token
    return token


async def _principal_from_cookies(
    request: Request,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Principal | None:
    jar = _cookie_jar(request, settings)
    access = request.cookies.get(jar.policy.access)
    if access:
        try:
            claims = auth.access_tokens.verify(access)
        except InvalidAccessToken:
            claims = None
        if claims is not None and not await auth.revocations.is_revoked(db, claims.session_id):
            return Principal(user_id=claims.user_id, session_id=claims.session_id)
    refresh = request.cookies.get(jar.policy.refresh)
    if not refresh:
        return None
    # The access token expired (or its session ended): rotate the refresh token, as the API's
    # /auth/refresh does. Parallel requests with the same cookie get the same child (grace).
    result = await auth_service.rotate_refresh_token(
        db,
        token=refresh,
        crypto=auth.refresh_tokens,
        revocations=auth.revocations,
        rate_limiter=auth.rate_limiter,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    if not isinstance(result, auth_service.Issued):
        log.info("browser_session_ended", reason=result.reason.value)
        end_browser_session(request, settings)
        return None
    _set_session_cookies(request, result, auth=auth, settings=settings)
    return Principal(user_id=result.user.id, session_id=result.auth_session.id)


async def _signed_in_user(
    request: Request, db: SessionDep, settings: Settings, principal: Principal | None
) -> tuple[User, int] | None:
    """The user behind a valid session and the number of items in their cart."""
    if principal is None:
        return None
    user = await auth_service.get_active_user(db, principal.user_id)
    if user is None:
        end_browser_session(request, settings)
        return None
    # Detached, so a rollback (a page ending in an AppError) cannot expire what the error page
    # reads from it.
    db.expunge(user)
    cart_count = await db.scalar(
        select(func.coalesce(func.sum(CartItem.quantity), 0)).where(CartItem.user_id == user.id)
    )
    return user, int(cart_count or 0)


async def _visitor(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal | None, Depends(_principal_from_cookies)],
) -> Visitor:
    csrf_token = _csrf_token(request, settings)
    signed_in = await _signed_in_user(request, db, settings, principal)
    if signed_in is None:
        visitor = Visitor(principal=None, user=None, cart_count=0, csrf_token=csrf_token)
    else:
        user, cart_count = signed_in
        visitor = Visitor(
            principal=principal, user=user, cart_count=cart_count, csrf_token=csrf_token
        )
    request.state.visitor = visitor  # for the error page this request may end with
    return visitor


VisitorDep = Annotated[Visitor, Depends(_visitor)]


@dataclass(frozen=True, slots=True)
class Customer:
    """A signed-in visitor, for pages that need one."""

    visitor: Visitor
    user_id: uuid.UUID
    session_id: uuid.UUID


async def _customer(request: Request, visitor: VisitorDep) -> Customer:
    if visitor.principal is None:
        path = request.url.path
        if request.url.query and request.method in SAFE_METHODS:
            path += "?" + request.url.query
        raise LoginRequired(path if request.method in SAFE_METHODS else "/")
    return Customer(
        visitor=visitor,
        user_id=visitor.principal.user_id,
        session_id=visitor.principal.session_id,
    )


CustomerDep = Annotated[Customer, Depends(_customer)]


def _allowed_origins(request: Request, settings: Settings) -> set[str]:
    public = settings.public_base_url
    origins = {f"{public.scheme}://{urlsplit(str(public)).netloc}"}
    host = request.headers.get("host")
    if host:
        origins.add(f"{request.url.scheme}://{host}")
    return origins


async def verify_csrf(request: Request, settings: SettingsDep) -> None:
    """For every unsafe request to a page: same-site, and the CSRF token matches the cookie.

    Mounted on the page routers, so no page route can forget it."""
    if request.method in SAFE_METHODS:
        return
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in {"same-origin", "none"}:
        raise CsrfRejected("This request came from another site and was refused.")
    origin = request.headers.get("origin")
    if origin is not None and origin not in _allowed_origins(request, settings):
        raise CsrfRejected("This request came from another site and was refused.")
    expected = request.cookies.get(cookie_policy(settings).csrf)
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
    if not expected or not presented or not hmac.compare_digest(expected, presented):
        raise CsrfRejected("The form was out of date or incomplete. Reload the page and try again.")


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    visitor: Visitor,
    status_code: int = 200,
) -> HTMLResponse:
    """A page in the site's layout, for this visitor. Signed-in pages are never cached."""
    response = templates.TemplateResponse(
        request, template, {"visitor": visitor, **context}, status_code=status_code
    )
    if visitor.signed_in:
        response.headers["Cache-Control"] = "no-store"
    return response
