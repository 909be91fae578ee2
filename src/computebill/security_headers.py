"""Response headers that tell browsers what a page may do: no sniffing, no framing, scripts and
styles only from this site, forms posted only here or to the Stripe checkout."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from computebill.config import Settings

# Stripe's hosted checkout, where a checkout form's 303 leads (Chromium checks form-action
# against redirects too).
STRIPE_CHECKOUT_ORIGIN = "https://checkout.stripe.com"
# One year, as the HSTS preload list asks.
HSTS_MAX_AGE_SECONDS = 365 * 24 * 3600


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    """The pages have no inline script or event handler; htmx's indicator styles are off
    (base.html). Style attributes stay allowed: a progress bar's width is one, and an attribute
    cannot load or run anything."""
    checkout = (
        _origin(str(settings.stripe_api_base))
        if settings.stripe_api_base
        else STRIPE_CHECKOUT_ORIGIN
    )
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "style-src-attr 'unsafe-inline'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'self'",
            f"form-action 'self' {checkout}",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeadersMiddleware:
    """Adds the headers to every response that does not set them itself. The API docs page
    (Swagger UI, inline script from a CDN) gets only the framing rule."""

    def __init__(self, app: ASGIApp, *, settings: Settings, docs_paths: frozenset[str]) -> None:
        self.app = app
        self.docs_paths = docs_paths
        common = {
            "x-content-type-options": "nosniff",
            "referrer-policy": "strict-origin-when-cross-origin",
            "x-frame-options": "DENY",
        }
        if settings.public_base_url.scheme == "https":
            common["strict-transport-security"] = f"max-age={HSTS_MAX_AGE_SECONDS}"
        self.page_headers = common | {"content-security-policy": content_security_policy(settings)}
        self.docs_headers = common | {"content-security-policy": "frame-ancestors 'none'"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = self.docs_headers if scope["path"] in self.docs_paths else self.page_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in added.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
