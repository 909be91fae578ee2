"""Add to cart while signed out, in Chromium: the login page says what for, the visitor signs up
instead (without verifying the address yet), and lands on the cart with the line there, without
pressing Add to cart again."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.chromium import screenshot
from tests.browser.flows import H100, PASSWORD, WAIT, configure, fresh_email
from tests.support.platform import Platform

pytestmark = pytest.mark.slow

WHY = "add 2 × NVIDIA H100 SXM to your cart"


async def test_a_signed_out_add_is_in_the_cart_after_signing_up(page: Page, live: Platform) -> None:
    await page.goto("/gpus/nvidia-h100")
    await configure(page, H100)
    await expect(page.locator("#add-to-cart")).to_contain_text("You will be asked to log in first.")
    await page.get_by_role("button", name="Add to cart").click()

    await expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)cart(%2F|/)pending$"))
    await expect(page.locator("[data-login-reason]")).to_have_text(f"Log in to {WHY}.")
    await screenshot(page, "login-to-add")
    await page.get_by_role("link", name="Create an account").click()
    await expect(page.locator("[data-login-reason]")).to_have_text(f"Create an account to {WHY}.")

    await page.get_by_label("E-mail").fill(fresh_email())
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()

    await expect(page).to_have_url(re.compile(r"/cart\?added="), timeout=WAIT)
    await expect(page.locator("[data-unverified-banner]")).to_be_visible()  # no gate on the cart
    await expect(page.locator("[data-cart-notice]")).to_have_text(
        "Added 2 × NVIDIA H100 SXM to your cart."
    )
    line = page.locator("[data-cart-line]")
    await expect(line).to_have_count(1)
    await expect(line.locator("[data-line-description]")).to_have_text(
        "2 × NVIDIA H100 SXM · 24 vCPUs · 500 GB NVMe · 3 h · us-east-1"
    )
    await expect(page.locator("#cart-count")).to_have_text("1")
    await screenshot(page, "added-after-sign-up")

    # Reloading the page adds nothing more.
    await page.reload()
    await expect(page.locator("[data-cart-line]")).to_have_count(1)
    await expect(page.locator("#cart-count")).to_have_text("1")
