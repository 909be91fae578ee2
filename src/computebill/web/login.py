"""Sending a browser to the login page and, once signed in, back where it was going."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import Response

from computebill.web.rendering import redirect

DEFAULT_LANDING = "/dashboard"
# Printable ASCII without the space: what a path given back in a header may hold.
_PATH_CHARACTERS = range(0x21, 0x7F)


class LoginRequired(Exception):
    """A page that needs a signed-in user; answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def safe_next(value: str | None) -> str:
    """A local path to return to after login; anything else (another site, a scheme, `//`)
    becomes the default landing page. So does any character outside printable ASCII: a line
    break cannot go into a Location or HX-Redirect header, and browsers drop tabs and breaks
    from URLs, which would turn `/<tab>/evil.example` into `//evil.example`."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_LANDING
    if not all(_PATH_CHARACTERS.start <= ord(char) < _PATH_CHARACTERS.stop for char in value):
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
