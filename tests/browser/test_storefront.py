"""The public pages in Chromium: home, a vendor's catalog, the configurator's live price, signing
up, out and in, and the theme toggle."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.chromium import screenshot
from tests.browser.flows import (
    H100,
    WAIT,
    configure,
    fresh_email,
    log_in,
    quote_total,
    shown_total,
    sign_up,
)
from tests.support.platform import Platform

pytestmark = pytest.mark.slow


async def test_configurator_price_is_the_servers_quote(page: Page, live: Platform) -> None:
    await page.goto("/")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("GPU instances")
    await screenshot(page, "home")

    await page.get_by_role("link", name="Browse NVIDIA").click()
    await expect(page).to_have_url(re.compile(r"/gpus/nvidia$"))
    await expect(page.get_by_role("heading", name="NVIDIA GPUs")).to_be_visible()
    await screenshot(page, "catalog")

    await page.locator("main a[href='/gpus/nvidia-h100']").click()
    await expect(page).to_have_url(re.compile(r"/gpus/nvidia-h100"))
    # One H100's shape: 24 vCPUs.
    first = {**H100, "gpu_count": 1, "vcpus": 24, "storage_gb": 100, "hours": 1}
    await expect(page.locator("[data-total-cents]")).to_have_attribute(
        "data-total-cents", str(await quote_total(live.base_url, first))
    )

    await configure(page, H100)
    expected = await quote_total(live.base_url, H100)
    await expect(page.locator("[data-total-cents]")).to_have_attribute(
        "data-total-cents", str(expected), timeout=WAIT
    )
    assert await shown_total(page) != await quote_total(live.base_url, first)
    await page.locator("input[name=hours]").blur()
    await screenshot(page, "configurator")

    # The same configuration in the address (no JavaScript needed) renders the same price.
    query = "&".join(f"{k}={v}" for k, v in H100.items() if k != "gpu")
    await page.goto(f"/gpus/nvidia-h100?{query}")
    assert await shown_total(page) == expected


async def test_an_impossible_configuration_shows_an_error_instead_of_a_price(page: Page) -> None:
    await page.goto("/gpus/nvidia-h100?gpu_count=2&vcpus=24&storage_gb=500&hours=100000")
    await expect(page.locator("#price [role=alert]")).to_contain_text("No price: hours must be")
    await expect(page.locator("[data-total-cents]")).to_have_count(0)
    # As it is typed too: tests/browser/test_configurator.py.


async def test_sign_up_log_out_and_log_in_again(page: Page, live: Platform) -> None:
    email = fresh_email()
    await sign_up(page, email, live.settings, next_page="/gpus/nvidia")
    await expect(page).to_have_url(re.compile(r"/gpus/nvidia$"))
    await expect(page.get_by_role("link", name=email)).to_be_visible()
    await expect(page.locator("#cart-count")).to_have_text("0")

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("link", name="Log in")).to_be_visible()
    await expect(page.locator("#cart-count")).to_have_count(0)

    await page.goto("/login")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("wrong")

    await log_in(page, email, next_page="/gpus/amd")
    await expect(page).to_have_url(re.compile(r"/gpus/amd$"))
    await expect(page.get_by_role("link", name=email)).to_be_visible()


async def test_theme_toggle_persists_across_navigation_and_reload(page: Page) -> None:
    html = page.locator("html")
    await page.goto("/")
    await expect(html).not_to_have_class(re.compile(r"\blight\b"))  # dark by default
    dark_background = await page.evaluate(
        "getComputedStyle(document.documentElement).backgroundColor"
    )

    toggle = page.locator("[data-theme-toggle]")
    await expect(toggle).to_have_text("Dark theme")
    await expect(toggle).to_have_accessible_name("Dark theme on: switch to light")
    await page.get_by_role("button", name="Dark theme on: switch to light").click()
    await expect(html).to_have_class(re.compile(r"\blight\b"))
    await expect(toggle).to_have_text("Light theme")
    assert (
        await page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        != dark_background
    )

    await page.get_by_role("link", name="NVIDIA", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/gpus/nvidia$"))
    await expect(html).to_have_class(re.compile(r"\blight\b"))
    await page.reload()
    await expect(html).to_have_class(re.compile(r"\blight\b"))
    await expect(toggle).to_have_accessible_name("Light theme on: switch to dark")

    await page.get_by_role("button", name="Light theme on: switch to dark").click()
    await expect(html).not_to_have_class(re.compile(r"\blight\b"))
    await page.goto("/")
    await expect(html).not_to_have_class(re.compile(r"\blight\b"))


async def test_keyboard_reaches_the_main_content(page: Page) -> None:
    await page.goto("/")
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await expect(skip).to_be_visible()
