"""Sessions in Chromium: two browsers signed in to one account, one revoking the other."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.chromium import NewContext, screenshot
from tests.browser.flows import fresh_email, log_in, sign_up
from tests.support.platform import Platform

pytestmark = pytest.mark.slow


async def signed_out(page: Page) -> None:
    """The page's next request finds the browser signed out: a page for signed-in users sends
    it to the login page."""
    await page.goto("/cart")
    await expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)cart$"))
    await expect(page.get_by_role("link", name="Log in")).to_be_visible()


async def test_revoking_a_session_signs_that_browser_out(
    new_context: NewContext, live: Platform
) -> None:
    email = fresh_email()
    laptop = await (await new_context()).new_page()
    phone = await (await new_context()).new_page()
    await sign_up(laptop, email, live.settings)
    await log_in(phone, email, next_page="/cart")

    await laptop.goto("/account")
    sessions = laptop.locator("[data-session-row]")
    await expect(sessions).to_have_count(2)
    current = laptop.locator("[data-session-row][data-current-session]")
    await expect(current).to_have_count(1)
    await expect(current.get_by_role("button", name="Revoke")).to_have_count(0)

    other = laptop.locator("[data-session-row]:not([data-current-session])")
    await other.get_by_role("button", name="Revoke").click()
    await expect(laptop.get_by_role("status")).to_contain_text("signed out")
    await expect(sessions).to_have_count(1)
    await signed_out(phone)

    # The laptop is still signed in.
    await laptop.goto("/cart")
    await expect(laptop).to_have_url(re.compile(r"/cart$"))


async def test_sign_out_everywhere_else(new_context: NewContext, live: Platform) -> None:
    email = fresh_email()
    laptop = await (await new_context()).new_page()
    phones = [await (await new_context()).new_page() for _ in range(2)]
    await sign_up(laptop, email, live.settings)
    for phone in phones:
        await log_in(phone, email)

    await laptop.goto("/account")
    await expect(laptop.locator("[data-session-row]")).to_have_count(3)
    await laptop.get_by_role("button", name="Sign out everywhere else").click()
    await expect(laptop.locator("[data-session-row]")).to_have_count(1)
    await expect(laptop.locator("[data-current-session]")).to_have_count(1)
    for phone in phones:
        await signed_out(phone)


async def test_an_api_key_is_made_shown_once_copied_and_revoked(page: Page, live: Platform) -> None:
    await sign_up(page, fresh_email(), live.settings)
    await page.goto("/account")
    await page.get_by_role("link", name="Manage API keys").click()
    await expect(page).to_have_url(re.compile(r"/account/api-keys$"))
    await page.get_by_label("Name").fill("deploy script")
    await page.get_by_role("checkbox", name=re.compile("instances:write")).check()
    await page.get_by_label("Expires").select_option("30")
    await page.get_by_role("button", name="Create key").click()

    secret = page.locator("[data-api-key-secret]")
    await expect(secret).to_have_text(re.compile(r"^cb_live_[\w-]{40,}$"))
    key = await secret.inner_text()
    await page.get_by_role("button", name="Copy").click()
    await expect(page.locator("[data-copy-feedback]")).to_contain_text(
        re.compile("Copied|Selected")
    )
    rows = page.locator("[data-api-key]")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text(f"cb_live_{key[8:16]}")
    await expect(rows).to_contain_text("read, instances:write")
    await screenshot(page, "api-keys")

    await page.goto("/account/api-keys")  # shown once: never again
    await expect(page.locator("[data-api-key-secret]")).to_have_count(0)
    await page.get_by_role("button", name="Revoke the key deploy script").click()
    await expect(page.get_by_role("status")).to_contain_text("revoked")
    await expect(page.locator("[data-api-keys-empty]")).to_be_visible()
