"""Password reset: `POST /auth/password-reset` answers alike whether or not the account exists
(and does the same keyed hashing; as SECURITY-CHECKLIST 1 asks of logins), a 30-minute
single-use link stored as an HMAC, asking again voids the older link, confirming checks the
policy and ends every session (SECURITY-CHECKLIST 9: every access and refresh token refused);
the pages, with CSRF (SECURITY-CHECKLIST 20); the rate limits per IP and per address."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from computebill.auth.tokens import RefreshTokenCrypto
from computebill.config import Settings
from computebill.state import app_state
from tests.auth.accounts import account_rows, tokens_table_mentions
from tests.support.http import Api, api_with_limits
from tests.support.mailbox import PASSWORD_RESET, emailed_token, emailed_tokens, emails_to
from tests.support.markup import the
from tests.support.pages import PASSWORD, Browser

REQUEST = "/api/v1/auth/password-reset"
CONFIRM = "/api/v1/auth/password-reset/confirm"
NEW_PASSWORD = "a brand new passphrase"


async def _ask(api: Api, email: str) -> Any:
    answer = await api.http.post(REQUEST, json={"email": email})
    assert answer.status_code == 202, answer.text
    return answer.json()


async def _confirm(api: Api, token: str, new_password: str = NEW_PASSWORD) -> Any:
    return await api.http.post(CONFIRM, json={"token": token, "new_password": new_password})


class Counted:
    """Counts the calls of one method of an object, calling through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
        self.calls = 0
        original: Callable[..., Any] = getattr(target, name)

        def counting(*args: Any) -> Any:
            self.calls += 1
            return original(*args)

        monkeypatch.setattr(target, name, counting)


async def test_the_answer_is_the_same_for_a_real_and_an_unknown_address(
    api: Api, email: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.sign_up(email)
    crypto = app_state(api.app).auth.refresh_tokens
    made, digested = (
        Counted(monkeypatch, crypto, "new_token"),
        Counted(monkeypatch, crypto, "digest"),
    )
    real = await api.http.post(REQUEST, json={"email": email.upper()})
    real_work = (made.calls, digested.calls)
    unknown = await api.http.post(REQUEST, json={"email": "nobody-" + email})
    unknown_work = (made.calls - real_work[0], digested.calls - real_work[1])
    invalid = await api.http.post(REQUEST, json={"email": "not an address"})

    assert real.status_code == unknown.status_code == invalid.status_code == 202
    assert real.json() == unknown.json() == invalid.json()
    assert real.headers["content-type"] == unknown.headers["content-type"]
    assert real_work == unknown_work == (1, 1)  # one token drawn and keyed-hashed either way
    assert len(await emailed_tokens(api.settings, email, PASSWORD_RESET)) == 1
    assert await emails_to(api.settings, "nobody-" + email) == []


async def test_a_reset_sets_the_password_and_ends_every_session(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    other = (await api.log_in(email, device="phone")).json()
    await _ask(api, email)
    token = await emailed_token(api.settings, email, PASSWORD_RESET)
    crypto = RefreshTokenCrypto(api.settings.required_token_pepper)
    _, tokens, _ = await account_rows(api.settings, email)
    (reset,) = [row for row in tokens if row.purpose == "password_reset"]
    assert reset.token_hash == crypto.digest(token)
    assert await tokens_table_mentions(api.settings, [token]) == []

    done = await _confirm(api, token)
    assert done.status_code == 204, done.text

    for session in (pair, other):
        assert (await api.get("/api/v1/me", session["access_token"])).status_code == 401
        assert (await api.refresh(session["refresh_token"])).status_code == 401
    assert (await api.log_in(email)).status_code == 401
    assert (await api.log_in(email, NEW_PASSWORD)).status_code == 200
    again = await _confirm(api, token)
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"

    assert "Your password was reset" in [
        sent.subject for sent in await emails_to(api.settings, email)
    ]
    _, _, events = await account_rows(api.settings, email)
    assert "password_reset_requested" in events
    assert events.count("password_reset") == 3  # the reset, and each of the two sessions ended


async def test_the_reset_notice_says_exactly_what_ended_and_what_did_not(
    api: Api, email: str
) -> None:
    """A reset ends every session (SECURITY-CHECKLIST 9) but, as a password change, leaves the
    API keys working; the notice says both, and where to revoke a key the owner did not make."""
    pair = await api.sign_up(email)
    key = (
        await api.call(
            "POST", "/api/v1/api-keys", pair["access_token"], {"name": "ci", "scopes": ["read"]}
        )
    ).json()["key"]
    await _ask(api, email)
    done = await _confirm(api, await emailed_token(api.settings, email, PASSWORD_RESET))
    assert done.status_code == 204

    assert (await api.get("/api/v1/me", pair["access_token"])).status_code == 401
    assert (await api.get("/api/v1/me", key)).status_code == 200
    (notice,) = [
        sent
        for sent in await emails_to(api.settings, email)
        if sent.subject == "Your password was reset"
    ]
    base = str(api.settings.public_base_url).rstrip("/")
    assert notice.body == (
        "The password of your account was reset, and every session was signed out. Your API "
        f"keys keep working: revoke any you did not make at {base}/account/api-keys.\n\n"
        f"If you did not do this, reset it again at {base}/password-reset and contact support."
    )


async def test_a_weak_password_is_refused_and_the_link_still_works(api: Api, email: str) -> None:
    await api.sign_up(email)
    await _ask(api, email)
    token = await emailed_token(api.settings, email, PASSWORD_RESET)
    weak = await _confirm(api, token, "short")
    assert weak.status_code == 422
    assert weak.json()["code"] == "invalid_password"
    done = await _confirm(api, token)
    assert done.status_code == 204


async def test_asking_again_voids_the_older_link(api: Api, email: str) -> None:
    await api.sign_up(email)
    await _ask(api, email)
    first = await emailed_token(api.settings, email, PASSWORD_RESET)
    await _ask(api, email)
    second = await emailed_token(api.settings, email, PASSWORD_RESET)
    assert first != second
    old = await _confirm(api, first)
    assert old.status_code == 400
    assert old.json()["code"] == "invalid_token"
    new = await _confirm(api, second)
    assert new.status_code == 204


async def test_the_link_lasts_thirty_minutes(api: Api, email: str) -> None:
    await api.sign_up(email)
    await _ask(api, email)
    token = await emailed_token(api.settings, email, PASSWORD_RESET)
    api.clock.advance(minutes=30, seconds=1)
    late = await _confirm(api, token)
    unknown = await api.http.post(
        CONFIRM, json={"token": secrets.token_urlsafe(32), "new_password": NEW_PASSWORD}
    )
    assert late.status_code == unknown.status_code == 400
    assert late.json() == unknown.json()
    assert (await api.log_in(email)).status_code == 200  # the password is unchanged


async def test_a_verification_token_does_not_reset_a_password(api: Api, email: str) -> None:
    await api.sign_up(email, verify=False)
    token = (await emailed_tokens(api.settings, email, "/verify-email"))[0]
    answer = await _confirm(api, token)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_token"


async def test_a_reset_verifies_the_address_it_was_sent_to(api: Api, email: str) -> None:
    await api.sign_up(email, verify=False)
    await _ask(api, email)
    token = await emailed_token(api.settings, email, PASSWORD_RESET)
    await _confirm(api, token)
    user, _, _ = await account_rows(api.settings, email)
    assert user.email_verified_at is not None


@pytest.fixture
async def per_address(settings: Settings) -> AsyncIterator[Api]:
    limits = {
        "rate_limit_password_reset_per_address": "2/hour",
        "rate_limit_password_reset_per_ip": "100/hour",
    }
    async for api in api_with_limits(settings, **limits):
        yield api


@pytest.fixture
async def per_ip(settings: Settings) -> AsyncIterator[Api]:
    limits = {
        "rate_limit_password_reset_per_address": "100/hour",
        "rate_limit_password_reset_per_ip": "3/hour",
    }
    async for api in api_with_limits(settings, **limits):
        yield api


async def test_requests_are_limited_per_normalised_address(per_address: Api, email: str) -> None:
    await per_address.sign_up(email)
    await _ask(per_address, email)
    await _ask(per_address, f"  {email.upper()} ")  # the same address, spelled otherwise
    refused = await per_address.http.post(REQUEST, json={"email": email})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    unknown = [await per_address.http.post(REQUEST, json={"email": "x-" + email}) for _ in "abc"]
    assert [answer.status_code for answer in unknown] == [202, 202, 429]  # alike for nobody
    await _ask(per_address, "other-" + email)


async def test_requests_are_limited_per_ip(per_ip: Api, email: str) -> None:
    for n in range(3):
        await _ask(per_ip, f"{n}-{email}")
    refused = await per_ip.http.post(REQUEST, json={"email": email})
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"


# The pages ---------------------------------------------------------------------------------------


async def test_forgot_password_from_the_login_page_to_a_new_password(
    browser: Browser, other_browser: Browser, email: str
) -> None:
    await other_browser.sign_up(email)  # a session elsewhere, which the reset ends
    login = await browser.page("/login")
    assert 'href="/password-reset"' in login.text
    assert "Forgot password?" in login.text

    sent = await browser.submit("/password-reset", {"email": email})
    assert sent.status_code == 200
    assert the(sent.text, "data-password-reset").attrs["data-password-reset"] == "sent"
    nobody = await browser.submit("/password-reset", {"email": "nobody-" + email})
    assert nobody.text.count("is on its way") == sent.text.count("is on its way") == 1

    token = await emailed_token(browser.settings, email, PASSWORD_RESET)
    form_page = f"/password-reset/confirm?token={token}"
    weak = await browser.submit(
        "/password-reset/confirm", {"token": token, "new_password": "x"}, form_page=form_page
    )
    assert weak.status_code == 422
    assert (
        the(weak.text, "data-password-reset-confirm").attrs["data-password-reset-confirm"] == "form"
    )
    done = await browser.submit(
        "/password-reset/confirm",
        {"token": token, "new_password": NEW_PASSWORD},
        form_page=form_page,
    )
    assert done.status_code == 200
    assert 'data-password-reset-confirm="done"' in done.text

    signed_out = await other_browser.page("/account")
    assert signed_out.status_code == 303  # its session ended: to the login page
    assert (await browser.log_in(email, PASSWORD)).status_code == 401
    assert (await browser.log_in(email, NEW_PASSWORD)).status_code == 303


async def test_the_reset_forms_need_the_csrf_token(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    await browser.page("/password-reset")
    forged = await browser.http.post("/password-reset", data={"email": email})
    assert forged.status_code == 403
    assert await emailed_tokens(browser.settings, email, PASSWORD_RESET) == []

    await browser.submit("/password-reset", {"email": email})
    token = await emailed_token(browser.settings, email, PASSWORD_RESET)
    forged = await browser.http.post(
        "/password-reset/confirm", data={"token": token, "new_password": NEW_PASSWORD}
    )
    assert forged.status_code == 403
    _, tokens, _ = await account_rows(browser.settings, email)
    (reset,) = [row for row in tokens if row.purpose == "password_reset"]
    assert reset.used_at is None


async def test_a_spent_link_shows_the_problem_on_the_page(browser: Browser) -> None:
    page = await browser.page(f"/password-reset/confirm?token={secrets.token_urlsafe(32)}")
    assert page.status_code == 200  # opening it spends nothing and checks nothing
    refused = await browser.submit(
        "/password-reset/confirm",
        {"token": secrets.token_urlsafe(32), "new_password": NEW_PASSWORD},
        form_page="/password-reset",
    )
    assert refused.status_code == 400
    assert 'data-password-reset-confirm="invalid"' in refused.text
