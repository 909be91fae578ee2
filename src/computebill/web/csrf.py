"""Cross-site request forgery: every unsafe request to a page must carry the CSRF token (a form
field or the X-CSRF-Token header that htmx sends) equal to the CSRF cookie, signed for the
browser's session, and must not come from another site (Sec-Fetch-Site, Origin).

The token is a signed double-submit token: `<nonce>.<HMAC(pepper, "csrf", binding, nonce)>`,
where the binding is the signed-in session's id, or empty for a signed-out visitor (whose random
nonce is then what tells visitors apart). A token is good only for the session it was signed for:
another session's token, or one from before sign-in (a new one is issued at sign-in), is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from urllib.parse import urlsplit

from fastapi import Request

from computebill.config import Settings
from computebill.errors import AppError
from computebill.web.cookies import cookie_jar, cookie_policy, session_max_age

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class CsrfRejected(AppError):
    status = 403
    code = "csrf_failed"
    title = "Request refused"


def _signature(settings: Settings, session_id: uuid.UUID | None, nonce: str) -> str:
    binding = str(session_id) if session_id is not None else ""
    message = f"csrf\x00{binding}\x00{nonce}".encode()
    mac = hmac.new(settings.required_token_pepper, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _is_valid(settings: Settings, token: str, session_id: uuid.UUID | None) -> bool:
    nonce, _, signature = token.partition(".")
    return bool(nonce) and hmac.compare_digest(
        signature.encode(), _signature(settings, session_id, nonce).encode()
    )


def csrf_token(request: Request, settings: Settings, session_id: uuid.UUID | None) -> str:
    """The CSRF token of this browser and session, issuing one (with its cookie) when the
    browser has none for it yet."""
    token: str | None = getattr(request.state, "csrf_token", None)
    if token is None:
        token = request.cookies.get(cookie_policy(settings).csrf)
        if not token or not _is_valid(settings, token, session_id):
            renew_csrf_token(request, settings, session_id)
            token = request.state.csrf_token
        request.state.csrf_token = token
    assert token is not None
    return token


def renew_csrf_token(request: Request, settings: Settings, session_id: uuid.UUID | None) -> None:
    """A new CSRF token and cookie for this browser (at sign-in: no token from before it stays
    good), used by the rest of the request too."""
    nonce = secrets.token_urlsafe(24)
    token = f"{nonce}.{_signature(settings, session_id, nonce)}"
    jar = cookie_jar(request, settings)
    jar.set(jar.policy.csrf, token, max_age=session_max_age(settings))
    request.state.csrf_token = token


def _public_origin(settings: Settings) -> str:
    """The site's own origin, from PUBLIC_BASE_URL: never the request's Host, which the
    client names (a DNS-rebound name would make any origin "same")."""
    public = settings.public_base_url
    return f"{public.scheme}://{urlsplit(str(public)).netloc}"


async def check_csrf(request: Request, settings: Settings, session_id: uuid.UUID | None) -> None:
    """For an unsafe request to a page: same-site, and the token presented is the cookie's and
    signed for this session (None: signed out)."""
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
    if (
        not expected
        or not presented
        or not hmac.compare_digest(expected.encode(), presented.encode())
        or not _is_valid(settings, presented, session_id)
    ):
        raise CsrfRejected("The form was out of date or incomplete. Reload the page and try again.")
