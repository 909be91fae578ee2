"""Wrong passwords typed in a signed-in session (turning 2FA off, changing the address or the
password, deleting the account, reauthenticating) count with the account's failed logins, so a
stolen session guesses the password no faster than a login could (SECURITY-CHECKLIST 2): once
the limit is used up, 429 `rate_limited` with `Retry-After` through the API, and the reason
beside the password field on the pages; other accounts are unaffected."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from computebill.config import Settings
from computebill.ratelimit import limit_window
from tests.auth.test_two_factor_pages import next_code_with_two_factor_on
from tests.support.http import Api, api_with_limits
from tests.support.markup import error_beside, the
from tests.support.pages import PASSWORD, Browser, browser_with_limits

WRONG = "not my password at all"
NEW_PASSWORD = "a brand new passphrase"
# Each API route that takes the password, and its body with a given password.
CONFIRMATIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "/api/v1/me/2fa/disable": lambda password: {"password": password, "code": "123456"},
    "/api/v1/me/email": lambda password: {"new_email": "moved@example.com", "password": password},
    "/api/v1/me/password": lambda password: {
        "current_password": password,
        "new_password": NEW_PASSWORD,
    },
    "/api/v1/me/delete": lambda password: {"password": password},
    "/api/v1/auth/reauthenticate": lambda password: {"password": password},
}


# The account's failures in a window (the default's count; a window long enough for a test).
FAILURES = "10/minute"


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Api]:
    async for api in api_with_limits(settings, rate_limit_login_failures_per_account=FAILURES):
        yield api


@pytest.fixture
async def limited_browser(settings: Settings) -> AsyncIterator[Browser]:
    async for browser in browser_with_limits(
        settings, rate_limit_login_failures_per_account=FAILURES
    ):
        yield browser


def _limit(settings: Settings) -> int:
    """How many wrong passwords (and failed logins) an account has in a window."""
    attempts, _ = limit_window(settings.rate_limit_login_failures_per_account)
    return attempts


@pytest.mark.parametrize("path", list(CONFIRMATIONS))
async def test_wrong_passwords_in_a_session_are_limited_with_the_failed_logins(
    limited: Api, email: str, path: str
) -> None:
    api = limited
    token = (await api.sign_up(email))["access_token"]
    await api.sign_up("other-" + email)
    body = CONFIRMATIONS[path]
    for _ in range(_limit(api.settings)):
        wrong = await api.call("POST", path, token, body(WRONG))
        assert (wrong.status_code, wrong.json()["code"]) == (403, "wrong_password")

    blocked = await api.call("POST", path, token, body(PASSWORD))  # even the right one waits

    assert blocked.status_code == 429, blocked.text
    assert blocked.headers["content-type"] == "application/problem+json"
    assert blocked.json()["code"] == "rate_limited"
    assert "Too many wrong passwords" in blocked.json()["detail"]
    _, window = limit_window(api.settings.rate_limit_login_failures_per_account)
    assert 1 <= int(blocked.headers["retry-after"]) <= window
    # One count with the login's: a login from a new device waits too; nothing was changed.
    assert (await api.log_in(email)).status_code == 429
    assert (await api.get("/api/v1/me", token)).json()["email"] == email
    assert (await api.log_in("other-" + email)).status_code == 200


async def test_every_route_that_takes_the_password_counts_in_one_limit(
    limited: Api, email: str
) -> None:
    """The failures of different routes and of the login add up: guessing cannot be spread."""
    api = limited
    token = (await api.sign_up(email))["access_token"]
    paths = list(CONFIRMATIONS)
    for attempt in range(_limit(api.settings) - 1):
        path = paths[attempt % len(paths)]
        assert (await api.call("POST", path, token, CONFIRMATIONS[path](WRONG))).status_code == 403
    assert (await api.log_in(email, WRONG)).status_code == 401

    for path, body in CONFIRMATIONS.items():
        answer = await api.call("POST", path, token, body(PASSWORD))
        assert (answer.status_code, answer.json()["code"]) == (429, "rate_limited"), path


# Each page form that takes the password: its action, its fields with the password, the page it
# is on, and the field the password is typed in.
PAGE_FORMS: list[tuple[str, Callable[[str], dict[str, str]], str, str]] = [
    (
        "/account/password",
        lambda password: {"current_password": password, "new_password": NEW_PASSWORD},
        "/account",
        "current_password",
    ),
    (
        "/account/email",
        lambda password: {"new_email": "moved@example.com", "password": password},
        "/account",
        "password",
    ),
    ("/account/delete", lambda password: {"password": password}, "/account/delete", "password"),
]


@pytest.mark.parametrize(("action", "fields", "page", "field"), PAGE_FORMS)
async def test_the_pages_say_why_beside_the_password_field(
    limited_browser: Browser,
    email: str,
    action: str,
    fields: Callable[[str], dict[str, str]],
    page: str,
    field: str,
) -> None:
    browser = limited_browser
    await browser.sign_up(email)
    for _ in range(_limit(browser.settings)):
        wrong = await browser.submit(action, fields(WRONG), form_page=page)
        assert wrong.status_code == 403
        assert error_beside(wrong.text, field) == "The current password is wrong."

    blocked = await browser.submit(action, fields(PASSWORD), form_page=page)

    assert blocked.status_code == 429
    assert error_beside(blocked.text, field).startswith("Too many wrong passwords; try again in")
    assert (await browser.page("/account")).status_code == 200  # still signed in, unchanged


async def test_turning_two_factor_off_says_each_refusal_beside_its_field(
    limited_browser: Browser, email: str
) -> None:
    """Wrong codes beside the code; wrong passwords beside the password, and once they used the
    account's limit up (counted with its failed logins, SECURITY-CHECKLIST 2) a 429 there, even
    for the right password."""
    browser = limited_browser
    code = await next_code_with_two_factor_on(browser, email)
    wrong_code = await browser.submit(
        "/account/security/disable",
        {"password": PASSWORD, "code": "000000"},
        form_page="/account/security",
    )
    assert wrong_code.status_code == 422
    assert error_beside(wrong_code.text, "code").startswith("That code is not right")
    for _ in range(_limit(browser.settings)):
        wrong = await browser.submit(
            "/account/security/disable",
            {"password": "not my password", "code": code},
            form_page="/account/security",
        )
        assert wrong.status_code == 403
        assert error_beside(wrong.text, "password") == "The current password is wrong."

    blocked = await browser.submit(
        "/account/security/disable",
        {"password": PASSWORD, "code": code},
        form_page="/account/security",
    )

    assert blocked.status_code == 429
    assert error_beside(blocked.text, "password").startswith("Too many wrong passwords")
    assert the(blocked.text, "data-two-factor").attrs["data-two-factor"] == "on"
