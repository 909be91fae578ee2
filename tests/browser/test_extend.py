"""Extending a running machine in Chromium: its dashboard row's Extend, the price for the hours
from the server, paid by card on Stripe's (the emulator's) page; back on the dashboard the same
machine stops that much later."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from playwright.async_api import expect

from tests.browser.chromium import NewContext
from tests.browser.flows import (
    PAID_CARD,
    SUCCESS_PAGE,
    WAIT,
    add_h100s_to_cart,
    fresh_email,
    pay_on_emulator,
    sign_up,
)
from tests.support.platform import Platform

pytestmark = pytest.mark.slow

HOURLY_CENTS = 668  # the H100 configuration: 2 GPUs, 24 vCPUs, 500 GB


async def test_extend_a_running_machine_by_card_and_see_its_new_stop_time(
    new_context: NewContext, live: Platform
) -> None:
    page = await (await new_context()).new_page()
    await sign_up(page, fresh_email(), live.settings)
    await add_h100s_to_cart(page, live.base_url)
    await page.get_by_role("button", name="Checkout").click()
    await pay_on_emulator(page, PAID_CARD)
    await expect(page).to_have_url(SUCCESS_PAGE, timeout=WAIT)  # not leaving before it is paid
    await page.goto("/dashboard")
    row = page.locator("[data-instance-row]").first
    await expect(row).to_have_attribute("data-instance-status", "running", timeout=WAIT)
    name = await row.locator("h3").inner_text()
    stops = row.locator("time")
    before = datetime.fromisoformat(await stops.get_attribute("datetime") or "")

    # Extend: the price of 2 more hours, from the server, before anything is paid.
    await row.get_by_role("link", name=f"Extend {name}").click()
    await expect(page).to_have_url(re.compile(r"/dashboard/instances/[0-9a-f-]+/extend"))
    await page.get_by_label("Hours to add").fill("2")
    await page.get_by_role("button", name="Show price").click()
    price = page.locator("[data-extend-price-cents]")
    await expect(price).to_have_attribute("data-extend-price-cents", str(2 * HOURLY_CENTS))
    await expect(price).to_have_text("$13.36")

    await page.get_by_role("button", name="Pay by card").click()
    await pay_on_emulator(page, PAID_CARD)
    await expect(page).to_have_url(SUCCESS_PAGE, timeout=WAIT)
    await expect(page.locator("[data-line-description]")).to_have_text(
        re.compile(rf"^Extend {re.escape(name)}: 2 h of 2 × NVIDIA H100 SXM")
    )

    # The same machine, stopping 2 hours later (the webhook and the worker did it meanwhile).
    later = (before + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M UTC")
    await page.goto("/dashboard")
    rows = page.locator("[data-instance-row]")
    for _ in range(30):
        if await rows.first.locator("time").inner_text() == later:
            break
        await page.wait_for_timeout(1_000)
        await page.reload()
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("h3")).to_have_text(name)
    await expect(rows.first.locator("time")).to_have_text(later)
