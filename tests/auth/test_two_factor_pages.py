"""Two-factor authentication on the pages: setting it up on /account/security (an inline QR
code, the secret, a code), the recovery codes shown once, the login's code page (CSRF-checked),
turning it off, and the admin pages' refusal without it."""

from __future__ import annotations

import re

import pyotp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.auth.models import User
from computebill.config import Settings
from tests.support.admins import grant_admin_role
from tests.support.markup import elements, error_beside, the
from tests.support.pages import PASSWORD, Browser

STEP_SECONDS = 30
CHALLENGE_INPUT = re.compile(r'name="challenge" value="([^"]+)"')


async def turn_on_two_factor_on_the_page(browser: Browser) -> tuple[pyotp.TOTP, list[str]]:
    set_up = await browser.submit("/account/security/setup", form_page="/account/security")
    assert set_up.status_code == 303
    assert set_up.headers["location"] == "/account/security"
    page = await browser.page("/account/security")
    secret = the(page.text, "data-totp-secret").text
    totp = pyotp.TOTP(secret)
    enabled = await browser.submit(
        "/account/security/enable",
        {"code": totp.at(browser.clock.now())},
        form_page="/account/security",
    )
    assert enabled.status_code == 200, enabled.text
    codes = [e.text for e in elements(enabled.text, "data-recovery-code")]
    return totp, codes


async def _log_out(browser: Browser) -> None:
    assert (await browser.submit("/logout", form_page="/account")).status_code == 303


async def test_setting_up_shows_an_inline_qr_code_and_the_secret(
    browser: Browser, engine: AsyncEngine, email: str
) -> None:
    await browser.sign_up(email)
    account = await browser.page("/account")
    assert the(account.text, "data-security-link").attrs["href"] == "/account/security"
    off = await browser.page("/account/security")
    assert off.status_code == 200
    assert the(off.text, "data-two-factor").attrs["data-two-factor"] == "off"

    assert (
        await browser.submit("/account/security/setup", form_page="/account/security")
    ).status_code == 303
    pending = await browser.page("/account/security")
    assert the(pending.text, "data-two-factor").attrs["data-two-factor"] == "pending"
    qr = the(pending.text, "data-qr-code")
    assert "<svg" in pending.text.split("data-qr-code", 1)[1][:400]  # drawn inline: no request
    assert "<img" not in str(qr)
    assert "<script" not in pending.text.split("</header>", 1)[-1]
    assert "script-src 'self'" in pending.headers["content-security-policy"]
    secret = the(pending.text, "data-totp-secret").text
    async with AsyncSession(engine) as db:
        stored = await db.scalar(select(User.totp_pending_secret).where(User.email == email))
    assert stored is not None
    assert secret.encode() not in stored

    wrong = await browser.submit(
        "/account/security/enable", {"code": "12345"}, form_page="/account/security"
    )
    assert wrong.status_code == 422
    assert "That code is not right" in wrong.text
    right = await browser.submit(
        "/account/security/enable",
        {"code": pyotp.TOTP(secret).at(browser.clock.now())},
        form_page="/account/security",
    )
    assert right.status_code == 200
    assert right.headers["cache-control"] == "no-store"
    assert len(elements(right.text, "data-recovery-code")) == 10
    # Shown once: the page afterwards has no codes.
    later = await browser.page("/account/security")
    assert the(later.text, "data-two-factor").attrs["data-two-factor"] == "on"
    assert elements(later.text, "data-recovery-code") == []


async def test_logging_in_asks_for_the_code_on_a_second_page(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    totp, _ = await turn_on_two_factor_on_the_page(browser)
    await _log_out(browser)

    first = await browser.submit("/login", {"email": email, "password": PASSWORD, "next": "/cart"})
    assert first.status_code == 200
    assert "Enter your code" in first.text
    assert "cb_access" not in first.headers.get("set-cookie", "")
    match = CHALLENGE_INPUT.search(first.text)
    assert match
    challenge = match.group(1)
    assert (await browser.page("/account")).status_code == 303  # not signed in yet

    # Without the CSRF token the code page refuses.
    browser.clock.advance(seconds=STEP_SECONDS)
    code = totp.at(browser.clock.now())
    forged = await browser.http.post("/login/code", data={"challenge": challenge, "code": code})
    assert forged.status_code == 403

    wrong = await browser.submit(
        "/login/code",
        {"challenge": challenge, "code": "000000", "next": "/cart"},
        form_page="/login",
    )
    assert wrong.status_code == 422
    assert "That code is not right" in wrong.text
    assert CHALLENGE_INPUT.search(wrong.text)  # the same challenge, for another try

    signed_in = await browser.submit(
        "/login/code", {"challenge": challenge, "code": code, "next": "/cart"}, form_page="/login"
    )
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == "/cart"
    assert (await browser.page("/account")).status_code == 200


async def test_a_recovery_code_signs_in_once_on_the_pages(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    _, codes = await turn_on_two_factor_on_the_page(browser)
    await _log_out(browser)
    for expected in (303, 422):
        first = await browser.submit("/login", {"email": email, "password": PASSWORD})
        assert the(first.text, "data-recovery-form")
        challenge = CHALLENGE_INPUT.search(first.text)
        assert challenge
        answer = await browser.submit(
            "/login/code", {"challenge": challenge.group(1), "code": codes[0]}, form_page="/login"
        )
        assert answer.status_code == expected, answer.text
        if expected == 303:
            await _log_out(browser)


async def next_code_with_two_factor_on(browser: Browser, email: str) -> str:
    """A new account with two-factor authentication on, turned on through the page, and the
    code of the next time step (the clock moved to it), which turns it off."""
    await browser.sign_up(email)
    totp, _ = await turn_on_two_factor_on_the_page(browser)
    browser.clock.advance(seconds=STEP_SECONDS)
    return totp.at(browser.clock.now())


async def test_turning_it_off_on_the_page_needs_password_and_code(
    browser: Browser, email: str
) -> None:
    code = await next_code_with_two_factor_on(browser, email)
    refused = await browser.submit(
        "/account/security/disable",
        {"password": "not my password", "code": code},
        form_page="/account/security",
    )
    assert refused.status_code == 403
    off = await browser.submit(
        "/account/security/disable",
        {"password": PASSWORD, "code": code},
        form_page="/account/security",
    )
    assert off.status_code == 303
    page = await browser.page(off.headers["location"])
    assert the(page.text, "data-two-factor").attrs["data-two-factor"] == "off"
    assert "Two-factor authentication is off" in page.text


async def test_turning_it_on_with_an_old_login_asks_for_the_password(
    browser: Browser, engine: AsyncEngine, email: str
) -> None:
    """A stolen browser session cannot enrol the thief's authenticator (and so sign the owner's
    other devices out, SECURITY-CHECKLIST 9) alone: once the login is older than
    REAUTHENTICATE_AFTER_SECONDS, the form asks for the password, and refuses without it."""
    await browser.sign_up(email)
    set_up = await browser.submit("/account/security/setup", form_page="/account/security")
    assert set_up.status_code == 303
    assert elements((await browser.page("/account/security")).text, "data-recent-login-field") == []
    browser.clock.advance(seconds=browser.settings.reauthenticate_after_seconds + 60)
    page = await browser.page("/account/security")
    assert the(page.text, "data-recent-login-field")
    code = pyotp.TOTP(the(page.text, "data-totp-secret").text).at(browser.clock.now())

    stale = await browser.submit(
        "/account/security/enable", {"code": code}, form_page="/account/security"
    )

    assert stale.status_code == 403
    assert error_beside(stale.text, "password").startswith("Your login is not recent enough")
    assert the(stale.text, "data-two-factor").attrs["data-two-factor"] == "pending"
    wrong = await browser.submit(
        "/account/security/enable",
        {"code": code, "password": "not my password"},
        form_page="/account/security",
    )
    assert wrong.status_code == 403
    assert error_beside(wrong.text, "password") == "The current password is wrong."
    async with AsyncSession(engine) as db:
        enabled_at = await db.scalar(select(User.totp_enabled_at).where(User.email == email))
    assert enabled_at is None

    right = await browser.submit(
        "/account/security/enable",
        {"code": code, "password": PASSWORD},
        form_page="/account/security",
    )

    assert right.status_code == 200, right.text
    assert len(elements(right.text, "data-recovery-code")) == 10


async def test_an_admin_without_two_factor_is_pointed_to_set_it_up(
    browser: Browser, settings: Settings, email: str
) -> None:
    await browser.sign_up(email)
    await grant_admin_role(settings, email)
    refused = await browser.page("/admin/jobs")
    assert refused.status_code == 403
    assert "/account/security" in refused.text
    await turn_on_two_factor_on_the_page(browser)
    outbox = await browser.http.get(
        "/api/v1/admin/outbox", headers={"authorization": f"Bearer {browser.access_token}"}
    )
    assert outbox.status_code == 200
