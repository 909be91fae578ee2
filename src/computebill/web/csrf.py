"""Cross-site request forgery: every unsafe request to a page must carry the CSRF token (a form
field or the X-CSRF-Token header that htmx sends) equal to the CSRF cookie, and must not come
from another site (Sec-Fetch-Site, Origin)."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request

from computebill.config import Settings
from computebill.deps import SettingsDep
from computebill.errors import AppError
from computebill.web.cookies import cookie_jar, cookie_policy, session_max_age

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class CsrfRejected(AppError):
    status = 403
    code = "csrf_failed"
    title = "Request refused"


def csrf_token(request: Request, settings: Settings) -> str:
    """The CSRF token of this browser, issuing one (with its cookie) on the first visit."""
    token: str | None = getattr(request.state, "csrf_token", None)
    if token is None:
        jar = cookie_jar(request, settings)
        token = request.cookies.get(jar.policy.csrf)
        if not token:
            token = secrets.token_urlsafe(32)
            jar.set(jar.policy.csrf, token, max_age=session_max_age(settings))
        request.state.csrf_token = token
    return token


def renew_csrf_token(request: Request, settings: Settings) -> None:
    """A new CSRF token and cookie for this browser (at sign-in), used by the rest of the
    request too."""
    token = secrets.token_urlsafe(32)
    jar = cookie_jar(request, settings)
    jar.set(jar.policy.csrf, token, max_age=session_max_age(settings))
    request.state.csrf_token = token


def _public_origin(settings: Settings) -> str:
    """The site's own origin, from PUBLIC_BASE_URL: never the request's Host, which the
    client names (a DNS-rebound name would make any origin "same")."""
    public = settings.public_base_url
    return f"{public.scheme}://{urlsplit(str(public)).netloc}"


async def verify_csrf(request: Request, settings: SettingsDep) -> None:
    """For every unsafe request to a page: same-site, and the CSRF token matches the cookie.

    Mounted on the page routers, so no page route can forget it."""
    if request.method in SAFE_METHODS:
        return
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in {"same-origin", "none"}:
        raise CsrfRejected("This request came from another site and was refused.")
    origin = request.headers.get("origin")
    if origin is not None and origin != _public_origin(settings):
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
