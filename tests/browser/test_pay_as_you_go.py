"""Prepaid credit in Chromium: top up $25 with the test card and see $25.00, launch a
pay-as-you-go H100 ×1 from the configurator, watch the balance go down without a reload,
terminate it, and find its usage on the ledger equal to its running seconds × its rate."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from computebill.credits.models import CreditEntry, EntryKind
from computebill.db import create_engine, create_sessionmaker
from computebill.instances import metering
from computebill.instances.models import Instance
from tests.browser.chromium import screenshot
from tests.browser.flows import (
    PAID_CARD,
    WAIT,
    fresh_email,
    pay_on_emulator,
    sign_up,
    terminate_in_page,
)
from tests.support.platform import Platform

pytestmark = pytest.mark.slow

H100_X1 = "/gpus/nvidia-h100?gpu_count=1&vcpus=12&storage_gb=100"


async def header_balance(page: Page) -> int:
    value = await page.locator("#header-balance").get_attribute("data-header-balance")
    assert value is not None
    return int(value)


async def test_top_up_launch_pay_as_you_go_watch_the_balance_and_terminate(
    page: Page, live: Platform
) -> None:
    await sign_up(page, fresh_email(), live.settings)
    await expect(page.locator("#header-balance")).to_have_attribute("data-header-balance", "0")

    # $25 with the test card: Stripe's page, then the success page once it is paid.
    await page.goto("/billing")
    await page.locator("[data-top-up-choice='2500']").click()
    await pay_on_emulator(page, PAID_CARD)
    await expect(page.get_by_text("Credit added: $25.00")).to_be_visible(timeout=WAIT)
    await page.goto("/billing")
    await expect(page.locator("[data-balance-cents]")).to_have_attribute(
        "data-balance-cents", "2500"
    )
    await expect(page.locator("#header-balance")).to_have_text("$25.00")
    await screenshot(page, "billing")

    # An H100 ×1 pay as you go, from the configurator, at the rate it shows.
    await page.goto(H100_X1)
    await page.locator("[data-launch-pay-as-you-go]").click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"), timeout=WAIT)
    await page.evaluate("window.loadedOnce = true")  # gone if the page were reloaded
    row = page.locator("[data-instance-row]").first
    await expect(row).to_have_attribute("data-instance-status", "running", timeout=WAIT)

    # Running: the header's balance goes down as the list polls, without a reload.
    await expect(page.locator("#header-balance")).not_to_have_attribute(
        "data-header-balance", "2500", timeout=WAIT
    )
    first = await header_balance(page)
    assert first < 2500
    assert await page.evaluate("window.loadedOnce === true"), "the dashboard was reloaded"
    await screenshot(page, "dashboard-pay-as-you-go")

    # Kept running at first: the panel closes and focus is back on the row's button.
    name = await row.locator("h3").inner_text()
    await row.get_by_role("button", name=f"Terminate {name}").click()
    panel = page.locator("#terminate-panel")
    await expect(panel.get_by_role("heading")).to_be_focused()
    await expect(panel).to_contain_text("Billing stops now. It is charged by the second")
    await panel.get_by_role("link", name="Keep it running").click()
    await expect(panel).to_be_empty()
    await expect(row.get_by_role("button", name=f"Terminate {name}")).to_be_focused()
    await expect(row).to_have_attribute("data-instance-status", "running")
    await terminate_in_page(page, row)
    await expect(row).to_have_attribute(
        "data-instance-status", re.compile(r"^(stopping|terminated)$"), timeout=WAIT
    )
    instance_id = await row.get_attribute("data-instance-id")
    assert instance_id is not None

    # What it ran, to the second, at its rate: the ledger's usage of it, settled to that second.
    engine = create_engine(live.settings)
    try:
        async with create_sessionmaker(engine)() as db:
            instance = await db.get(Instance, uuid.UUID(instance_id))
            assert instance is not None
            assert instance.started_at is not None
            assert instance.run_ended_at is not None
            assert instance.rate_millicents_per_hour is not None
            seconds = int((instance.run_ended_at - instance.started_at).total_seconds())
            owed = metering.owed_millicents(instance.rate_millicents_per_hour, seconds)
            charged = list(
                await db.scalars(
                    select(CreditEntry.amount_millicents).where(
                        CreditEntry.instance_id == instance.id,
                        CreditEntry.kind == EntryKind.USAGE,
                    )
                )
            )
    finally:
        await engine.dispose()
    assert seconds > 0
    assert -sum(charged) == owed

    await page.goto("/billing")
    usage = page.locator("[data-entry][data-entry-kind='usage']")
    await expect(usage).to_have_count(len(charged))
    shown = [
        int(await usage.nth(i).get_attribute("data-amount-millicents") or 0)
        for i in range(len(charged))
    ]
    assert -sum(shown) == owed
    await expect(page.locator("[data-balance-cents]")).to_have_attribute(
        "data-balance-cents", str((2_500_000 - owed) // 1000)
    )
