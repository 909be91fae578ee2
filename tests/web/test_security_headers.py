"""Every response tells the browser not to sniff, frame or leak it, and the pages may run only
this site's scripts; HSTS when the platform is served over https."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AnyHttpUrl

from computebill.config import Settings
from computebill.security_headers import content_security_policy
from tests.support.pages import Browser

TEMPLATES = Path(__file__).parents[2] / "src" / "computebill" / "web" / "templates"
COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-frame-options": "DENY",
}


def _directives(policy: str) -> dict[str, str]:
    return dict(part.strip().partition(" ")[::2] for part in policy.split(";"))


@pytest.mark.parametrize("path", ["/", "/login", "/healthz", "/api/v1/me", "/nowhere"])
async def test_every_response_carries_the_headers(browser: Browser, path: str) -> None:
    answer = await browser.page(path)
    for name, value in COMMON.items():
        assert answer.headers[name] == value
    assert "strict-transport-security" not in answer.headers  # plain http on loopback
    policy = _directives(answer.headers["content-security-policy"])
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["form-action"].startswith("'self'")


def test_the_checkout_origin_may_receive_a_form(settings: Settings) -> None:
    """A checkout form's 303 leads to the hosted checkout, which Chromium checks as form-action:
    Stripe's, or the emulator's when STRIPE_API_BASE points at it."""
    stripe = _directives(
        content_security_policy(settings.model_copy(update={"stripe_api_base": None}))
    )
    assert stripe["form-action"] == "'self' https://checkout.stripe.com"
    emulated = settings.model_copy(
        update={"stripe_api_base": AnyHttpUrl("http://127.0.0.1:12111/v1")}
    )
    assert _directives(content_security_policy(emulated))["form-action"] == (
        "'self' http://127.0.0.1:12111"
    )


async def test_the_api_docs_may_load_swagger_but_not_be_framed(browser: Browser) -> None:
    answer = await browser.page("/api/docs")
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert answer.headers["x-frame-options"] == "DENY"


async def test_hsts_when_served_over_https(https_browser: Browser) -> None:
    answer = await https_browser.page("/")
    assert answer.headers["strict-transport-security"] == "max-age=31536000"


def test_templates_have_no_inline_script_or_event_handler() -> None:
    """What the CSP would refuse: a <script> without src, an on…= attribute, a <style>."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert "<style" not in text, template.name
