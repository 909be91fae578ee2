"""Auto-recharge and the paperwork in Chromium: top up $10 saving the card, set "below $20, add
$50", run a pay-as-you-go H100 until the balance falls under $20, and see the rule charge the
saved card once: the balance restored and the attempt listed. Then download the invoices of both
top-ups and last month's statement as PDFs and read their figures."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from computebill.auth.models import User
from computebill.credits.models import EntryKind
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from tests.browser.chromium import screenshot
from tests.browser.flows import (
    PAID_CARD,
    WAIT,
    fresh_email,
    pay_on_emulator,
    reload_until,
    sign_up,
)
from tests.credits.ledger import post
from tests.invoices.paperwork import pdf_pages
from tests.support.platform import Platform
from tests.support.settings import settings_environment

pytestmark = pytest.mark.slow

H100_X1 = "/gpus/nvidia-h100?gpu_count=1&vcpus=12&storage_gb=100"
WELCOME_MILLICENTS = 1_001_000  # $10.01, posted last month: $10 topped up makes $20.01
RECHARGE_WAIT = 90_000  # ms: a boot (6-9 s), a cent of burn (~11 s) and the charge


def _last_month(now: datetime) -> datetime:
    first = now.replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    return first - timedelta(days=14)


async def _welcome_credit_last_month(live: Platform, email: str) -> datetime:
    """The account was credited last month (so it has a statement to issue): an adjustment
    dated then, as an operator's would be."""
    engine = create_engine(live.settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            user_id = await db.scalar(select(User.id).where(User.email == email))
            assert isinstance(user_id, uuid.UUID)
            when = _last_month(datetime.now(UTC))
            await post(
                db, user_id, EntryKind.ADJUSTMENT, WELCOME_MILLICENTS, reason="Welcome", now=when
            )
    finally:
        await engine.dispose()
    return when


async def _issue_statements(live: Platform, month: str) -> str:
    """`computebill statements issue --month YYYY-MM`, as an operator runs it."""
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "computebill",
        "statements",
        "issue",
        "--month",
        month,
        env=settings_environment(live.app_settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await command.communicate()
    assert command.returncode == 0, output.decode()
    return output.decode()


async def _pdf_text(page: Page, href: str) -> str:
    """The PDF behind a link, fetched with the page's session, as text."""
    answer = await page.request.get(href)
    assert answer.status == 200, await answer.text()
    assert answer.headers["content-type"] == "application/pdf"
    return "\n".join(pdf_pages(await answer.body()))


async def test_a_saved_card_recharges_the_balance_and_the_paperwork_downloads(
    page: Page, live: Platform
) -> None:
    email = fresh_email()
    await sign_up(page, email, live.settings)
    welcomed = await _welcome_credit_last_month(live, email)

    # $10, paid with 4242 on Stripe's page, keeping the card for auto-recharge.
    await page.goto("/billing")
    await page.locator("[data-save-card]").check()
    await page.locator("#field-amount").fill("10.00")
    await page.get_by_role("button", name="Add credit").click()
    await pay_on_emulator(page, PAID_CARD)
    await expect(page.get_by_text("Credit added: $10.00")).to_be_visible(timeout=WAIT)
    await page.goto("/billing")
    await reload_until(page, "[data-card]", timeout_ms=WAIT)
    await expect(page.locator("[data-card]")).to_contain_text("4242")
    await expect(page.locator("[data-card-default]")).to_be_visible()
    await expect(page.locator("[data-balance-cents]")).to_have_attribute(
        "data-balance-cents", "2001"
    )

    # The rule: below $20, add $50.
    rule = page.locator("[data-auto-recharge]")
    await rule.locator("input[name=enabled]").check()
    await rule.locator("input[name=threshold]").fill("20.00")
    await rule.locator("input[name=amount]").fill("50.00")
    await rule.get_by_role("button", name="Save").click()
    await expect(page.locator("[data-runway]")).to_contain_text(
        "With auto-recharge: $50.00 is added when it falls below $20.00", timeout=WAIT
    )

    # A pay-as-you-go H100 burns the cent above $20; the worker charges the saved card once.
    await page.goto(H100_X1)
    await page.locator("[data-launch-pay-as-you-go]").click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"), timeout=WAIT)
    await page.goto("/billing")
    await reload_until(
        page, "[data-attempt][data-attempt-status=succeeded]", timeout_ms=RECHARGE_WAIT
    )
    await expect(page.locator("[data-attempt]")).to_have_count(1)
    await expect(page.locator("[data-attempt]")).to_contain_text("Charged")
    await expect(page.locator("[data-attempt]")).to_contain_text("$50.00")
    balance = int(
        await page.locator("[data-balance-cents]").get_attribute("data-balance-cents") or 0
    )
    assert 6900 < balance < 7001, balance  # $20.00 less what ran, plus $50.00
    await expect(page.locator("[data-entry][data-entry-kind=top_up]")).to_have_count(2)
    await screenshot(page, "billing-auto-recharge")

    # Its invoice and the first top-up's, as PDFs, numbered and naming the card.
    invoices = page.locator("[data-invoice]")
    await reload_until(page, "[data-invoice] >> nth=1", timeout_ms=WAIT)
    await expect(invoices).to_have_count(2)
    numbers = [await invoices.nth(i).get_attribute("data-invoice") for i in range(2)]
    for number, total in zip(numbers, ("$50.00", "$10.00"), strict=True):
        assert number is not None
        assert re.fullmatch(r"CB-\d{4}-\d{6}", number), number
        row = page.locator(f"[data-invoice='{number}']")
        href = await row.get_by_role("link", name="PDF").get_attribute("href")
        assert href is not None
        text = await _pdf_text(page, href)
        assert number in text
        assert re.search(rf"Total\s*\{total}", text), text
        assert "Visa" in text, text
        assert "4242" in text, text

    # Last month's statement, issued by the operator's command, downloaded from the page.
    month = f"{welcomed:%Y-%m}"
    assert "statements of" in await _issue_statements(live, month)
    await page.reload()
    statement = page.locator(f"[data-statement='{month}']")
    await expect(statement).to_be_visible()
    href = await statement.get_by_role("link", name="PDF").get_attribute("href")
    assert href is not None
    text = await _pdf_text(page, href)
    assert "$10.01" in text  # the month's one entry and its closing balance
    assert "Page 1 of 1" in text
