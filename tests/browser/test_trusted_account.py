"""A customer makes their account one a GPU cloud can trust, in Chromium: sign up, find the
verification e-mail on the development mail page (it went out over SMTP to the catcher) and
follow its link, turn on two-factor authentication from the QR page's secret, log out and back in
with a code, make an API key, and launch a machine through the API with it."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pyotp
import pytest
import zxingcpp
from PIL import Image
from playwright.async_api import Page, expect

from tests.browser.chromium import screenshot
from tests.browser.flows import (
    PAID_CARD,
    PASSWORD,
    WAIT,
    fresh_email,
    next_code,
    pay_on_emulator,
)
from tests.support.platform import Platform

pytestmark = pytest.mark.slow

H100_X1 = {"gpu": "nvidia-h100", "gpu_count": 1, "vcpus": 12, "storage_gb": 100, "max_hours": 1}


async def open_caught_mail(page: Page, recipient: str, subject: str) -> None:
    """The newest e-mail to `recipient` with this subject, opened from /_dev/mail once the
    worker has delivered it (the list is read again until it arrives)."""
    row = page.locator("[data-caught-mail]").filter(has_text=recipient).filter(has_text=subject)
    deadline = datetime.now(UTC) + timedelta(milliseconds=WAIT)
    await page.goto("/_dev/mail")
    while await row.count() == 0:
        assert datetime.now(UTC) < deadline, f"no e-mail {subject!r} to {recipient} was caught"
        await page.wait_for_timeout(500)
        await page.reload()
    await row.first.get_by_role("link").click()
    await expect(page.locator("[data-caught-to]")).to_contain_text(recipient)


async def test_verify_turn_on_two_factor_log_in_with_a_code_and_launch_with_an_api_key(
    page: Page, live: Platform
) -> None:
    email = fresh_email()
    await page.goto("/signup")
    await page.get_by_label("Name").fill("Ada Trust")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("[data-unverified-banner]")).to_be_visible()

    # The verification e-mail, as the catcher received it over SMTP; its link, clicked.
    await open_caught_mail(page, email, "Confirm your e-mail address")
    link = page.locator("[data-caught-text] a", has_text="/verify-email?token=")
    await screenshot(page, "dev-mail-verification")
    await link.click()
    await page.get_by_role("button", name="Verify my address").click()
    await expect(page.locator('[data-verify-email="verified"]')).to_be_visible()
    await expect(page.locator("[data-unverified-banner]")).to_have_count(0)

    # Two-factor authentication: the secret read from the set-up page, one code to turn it on.
    await page.goto("/account/security")
    await page.get_by_role("button", name="Set up two-factor authentication").click()
    qr_code = page.locator("[data-qr-code] svg")
    await expect(qr_code).to_be_visible()
    secret = (await page.locator("[data-totp-secret]").inner_text()).strip()
    # What a phone's camera reads: the otpauth URI of the secret printed beside the code.
    [scanned] = zxingcpp.read_barcodes(Image.open(io.BytesIO(await qr_code.screenshot())))
    uri = urlsplit(scanned.text)
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert parse_qs(uri.query)["secret"] == [secret]
    assert email in unquote(uri.path)
    totp = pyotp.TOTP(secret)
    await screenshot(page, "two-factor-setup")
    enabling_code = totp.now()
    await page.get_by_label("Code from the app").fill(enabling_code)
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.locator("[data-recovery-code]")).to_have_count(10)
    await expect(page.locator('[data-two-factor="on"]')).to_be_visible()

    # Log out, then in: the password alone is not enough, the code finishes the login.
    await page.get_by_role("button", name="Log out").click()
    await page.goto("/login")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_label("Authentication code")).to_be_visible()
    await expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    await page.get_by_label("Authentication code").fill(next_code(totp, enabling_code))
    await page.get_by_role("button", name="Verify", exact=True).click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()

    # Credit to launch with: $25 with the test card on Stripe's page.
    await page.goto("/billing")
    await page.locator("[data-top-up-choice='2500']").click()
    await pay_on_emulator(page, PAID_CARD)
    await expect(page.get_by_text("Credit added: $25.00")).to_be_visible(timeout=WAIT)

    # A key that may launch and read, shown once.
    await page.goto("/account/api-keys")
    await page.get_by_label("Name").fill("launcher")
    await page.get_by_role("checkbox", name=re.compile("instances:write")).check()
    await page.get_by_role("button", name="Create key").click()
    key = (await page.locator("[data-api-key-secret]").inner_text()).strip()
    assert key.startswith("cb_live_")

    # The API, with the key alone: the launch, then the same machine on the dashboard.
    async with httpx.AsyncClient(
        base_url=live.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        launched = await api.post("/api/v1/instances", json=H100_X1)
        assert launched.status_code == 201, launched.text
        instance_id = launched.json()["id"]
        refused = await api.post("/api/v1/credits/top-ups", json={"amount_cents": 2500})
        assert refused.status_code == 403
        assert refused.json()["code"] == "insufficient_scope"
    await page.goto("/dashboard")
    row = page.locator(f"[data-instance-id='{instance_id}']")
    await expect(row).to_be_visible(timeout=WAIT)
    await page.goto("/account/api-keys")
    await expect(page.locator("[data-api-key]")).to_contain_text("launcher")
    await screenshot(page, "api-keys-used")
