"""E-mail verification: the link sign-up sends (single use, 24 hours, stored only as an HMAC, as
SECURITY-CHECKLIST 4 asks of refresh tokens), `POST /auth/verify-email`, the page that confirms
with a button and a CSRF token (SECURITY-CHECKLIST 20; a GET never spends a link, SECURITY-CHECKLIST
22), resending (rate-limited), and `GET /me`'s `email_verified`."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator

import pytest

from computebill.auth.tokens import RefreshTokenCrypto
from computebill.config import Settings
from tests.auth.accounts import account_rows, tokens_table_mentions
from tests.support.http import Api, api_with_limits
from tests.support.mailbox import VERIFY_EMAIL, emailed_token, emailed_tokens, emails_to
from tests.support.markup import the
from tests.support.pages import Browser

VERIFY = "/api/v1/auth/verify-email"
RESEND = "/api/v1/auth/verify-email/resend"


async def _verified(api: Api, access_token: str) -> bool:
    me = await api.get("/api/v1/me", access_token)
    assert me.status_code == 200, me.text
    return bool(me.json()["email_verified"])


async def test_sign_up_e_mails_a_link_that_verifies_the_address_once(api: Api, email: str) -> None:
    pair = await api.sign_up(email, verify=False)
    (sent,) = await emails_to(api.settings, email)
    base = str(api.settings.public_base_url).rstrip("/")
    assert f"{base}{VERIFY_EMAIL}?token=" in sent.body
    assert not await _verified(api, pair["access_token"])

    token = await emailed_token(api.settings, email, VERIFY_EMAIL)
    assert (await api.http.post(VERIFY, json={"token": token})).status_code == 204
    assert await _verified(api, pair["access_token"])

    again = await api.http.post(VERIFY, json={"token": token})
    assert again.status_code == 400
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "invalid_token"
    _, _, events = await account_rows(api.settings, email)
    assert events.count("email_verification_sent") == 1
    assert events.count("email_verified") == 1


async def test_the_token_is_stored_only_as_its_hmac(api: Api, email: str) -> None:
    await api.sign_up(email, verify=False)
    token = await emailed_token(api.settings, email, VERIFY_EMAIL)
    user, (stored,), _ = await account_rows(api.settings, email)
    crypto = RefreshTokenCrypto(api.settings.required_token_pepper)
    assert stored.token_hash == crypto.digest(token)
    assert stored.purpose == "verify_email"
    assert stored.email == user.email
    raw = base64.urlsafe_b64decode(token + "=").hex()
    assert await tokens_table_mentions(api.settings, [token, raw]) == []


async def test_an_expired_unknown_or_used_token_gets_the_same_answer(api: Api, email: str) -> None:
    await api.sign_up(email, verify=False)
    token = await emailed_token(api.settings, email, VERIFY_EMAIL)
    api.clock.advance(hours=24, seconds=1)
    expired = await api.http.post(VERIFY, json={"token": token})
    unknown = await api.http.post(VERIFY, json={"token": secrets.token_urlsafe(32)})
    assert expired.status_code == unknown.status_code == 400
    assert expired.json() == unknown.json()
    assert expired.json()["code"] == "invalid_token"

    await api.sign_up("used-" + email)
    used_token = (await emailed_tokens(api.settings, "used-" + email, VERIFY_EMAIL))[0]
    used = await api.http.post(VERIFY, json={"token": used_token})
    assert used.status_code == 400
    assert used.json() == unknown.json()


async def test_a_token_just_inside_its_day_still_works(api: Api, email: str) -> None:
    pair = await api.sign_up(email, verify=False)
    token = await emailed_token(api.settings, email, VERIFY_EMAIL)
    api.clock.advance(hours=23, minutes=59)
    assert (await api.http.post(VERIFY, json={"token": token})).status_code == 204
    assert await _verified(api, pair["access_token"])


@pytest.mark.parametrize("body", [{"token": 12345}, {"token": ""}, {}, {"token": "x", "y": 1}])
async def test_a_malformed_request_is_a_clean_422(api: Api, body: dict[str, object]) -> None:
    answer = await api.http.post(VERIFY, json=body)
    assert answer.status_code == 422
    assert answer.json()["code"] == "validation_error"


async def test_resending_replaces_the_link_and_needs_a_login(api: Api, email: str) -> None:
    pair = await api.sign_up(email, verify=False)
    first = await emailed_token(api.settings, email, VERIFY_EMAIL)
    assert (await api.http.post(RESEND)).status_code == 401
    assert (await api.call("POST", RESEND, pair["access_token"])).status_code == 202
    second = await emailed_token(api.settings, email, VERIFY_EMAIL)
    assert second != first
    assert (await api.http.post(VERIFY, json={"token": first})).json()["code"] == "invalid_token"
    assert (await api.http.post(VERIFY, json={"token": second})).status_code == 204

    done = await api.call("POST", RESEND, pair["access_token"])
    assert done.status_code == 409
    assert done.json()["code"] == "email_already_verified"


@pytest.fixture
async def resend_limited(settings: Settings) -> AsyncIterator[Api]:
    limits = {"rate_limit_verification_resend_per_account": "2/hour"}
    async for api in api_with_limits(settings, **limits):
        yield api


async def test_resending_is_limited_per_account(resend_limited: Api, email: str) -> None:
    api = resend_limited
    pair = await api.sign_up(email, verify=False)
    other = await api.sign_up("other-" + email, verify=False)
    for _ in range(2):
        assert (await api.call("POST", RESEND, pair["access_token"])).status_code == 202
    refused = await api.call("POST", RESEND, pair["access_token"])
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) > 0
    assert (await api.call("POST", RESEND, other["access_token"])).status_code == 202


# The pages ---------------------------------------------------------------------------------------


async def test_opening_the_link_spends_nothing_until_the_button_is_pressed(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email, verify=False)
    token = await emailed_token(browser.settings, email, VERIFY_EMAIL)
    for _ in range(2):  # a mail scanner's fetch, then the reader's
        page = await browser.page(f"/verify-email?token={token}")
        assert page.status_code == 200
        assert the(page.text, "data-verify-email").attrs["data-verify-email"] == "confirm"
    _, (stored,), _ = await account_rows(browser.settings, email)
    assert stored.used_at is None

    confirmed = await browser.submit(
        "/verify-email", {"token": token}, form_page=f"/verify-email?token={token}"
    )
    assert confirmed.status_code == 200
    assert 'data-verify-email="verified"' in confirmed.text
    assert "data-unverified-banner" not in confirmed.text
    user, _, _ = await account_rows(browser.settings, email)
    assert user.email_verified_at is not None

    again = await browser.submit(
        "/verify-email", {"token": token}, form_page=f"/verify-email?token={token}"
    )
    assert again.status_code == 400
    assert 'data-verify-email="invalid"' in again.text


async def test_confirming_needs_the_csrf_token(browser: Browser, email: str) -> None:
    await browser.sign_up(email, verify=False)
    token = await emailed_token(browser.settings, email, VERIFY_EMAIL)
    await browser.page(f"/verify-email?token={token}")
    forged = await browser.http.post("/verify-email", data={"token": token})
    assert forged.status_code == 403
    user, _, _ = await account_rows(browser.settings, email)
    assert user.email_verified_at is None


async def test_every_signed_in_page_shows_the_banner_until_verified(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email, verify=False)
    for path in ("/", "/account", "/cart", "/billing", "/dashboard"):
        page = await browser.page(path)
        assert page.status_code == 200, path
        banner = the(page.text, "data-unverified-banner")
        assert "Verify your e-mail address to buy." in banner.text
        assert email in banner.text
    resent = await browser.submit("/verify-email/resend", form_page="/account")
    assert resent.status_code == 303
    assert resent.headers["location"] == "/account?notice=verification-sent"
    assert len(await emailed_tokens(browser.settings, email, VERIFY_EMAIL)) == 2

    await browser.verify_email(email)
    for path in ("/", "/account"):
        assert "data-unverified-banner" not in (await browser.page(path)).text
