"""The billing page's top-up form: $25, $100, $500 or another amount, through the same two units
of work as `POST /api/v1/credits/top-ups`, on to Stripe's page; a bad amount, or Stripe away,
is shown with the form (in place for htmx), never a 500."""

from __future__ import annotations

import httpx
from pydantic import AnyHttpUrl
from sqlalchemy import select

from computebill.config import Settings
from computebill.credits.models import CreditTopUp, TopUpStatus
from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import database
from tests.cart.test_cart_pages import HTMX
from tests.support.markup import elements, the
from tests.support.pages import Browser, browser_for
from tests.support.stripe import EmulatorProcess, with_stripe

TOP_UPS = "/billing/top-ups"


async def stored_top_ups(settings: Settings, checkout_url: str) -> list[CreditTopUp]:
    async with database(settings) as sessions, sessions() as db:
        found = await db.scalars(
            select(CreditTopUp).where(CreditTopUp.checkout_url == checkout_url)
        )
        return list(found)


async def test_the_page_offers_three_amounts_and_any_other(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    form = the((await browser.page("/billing")).text, "data-top-up")
    choices = [b["value"] for b in form.find("button") if "data-top-up-choice" in b]
    assert choices == ["25.00", "100.00", "500.00"]
    assert form.find("input", name="amount")
    assert "$10.00" in form.text  # the limits, from the settings
    assert "$5,000.00" in form.text


async def test_a_chosen_amount_goes_to_stripes_page_for_exactly_that(
    shop_browser: Browser, checkout_emulator: EmulatorProcess, email: str, settings: Settings
) -> None:
    await shop_browser.sign_up(email)
    for typed, cents in (("25.00", 2_500), ("$1,234.5", 123_450)):
        answer = await shop_browser.submit(TOP_UPS, {"amount": typed}, form_page="/billing")
        assert answer.status_code == 303, answer.text
        checkout_url = answer.headers["location"]
        assert checkout_url.startswith(checkout_emulator.base_url)
        [top_up] = await stored_top_ups(settings, checkout_url)
        assert (top_up.amount_cents, top_up.status) == (cents, TopUpStatus.PENDING)
        async with httpx.AsyncClient() as stripe_page:
            hosted = await stripe_page.get(checkout_url)
        assert hosted.status_code == 200
        assert f"USD {cents // 100:,}.{cents % 100:02d}".replace(",", "") in hosted.text.replace(
            ",", ""
        )


async def test_htmx_follows_to_stripes_page(
    shop_browser: Browser, checkout_emulator: EmulatorProcess, email: str
) -> None:
    await shop_browser.sign_up(email)
    await shop_browser.page("/billing")
    answer = await shop_browser.http.post(
        TOP_UPS,
        data={"amount": "100.00"},
        headers=HTMX | {"X-CSRF-Token": shop_browser.csrf_token},
    )
    assert answer.status_code == 204
    assert answer.headers["hx-redirect"].startswith(checkout_emulator.base_url)


async def test_a_bad_amount_is_shown_with_the_form(
    browser: Browser, email: str, settings: Settings
) -> None:
    await browser.sign_up(email)
    for typed, message in (
        ("ten", "Enter an amount in dollars, such as 40 or 12.50."),
        ("12.345", "Enter an amount in dollars, such as 40 or 12.50."),
        ("5", "A top-up is between $10.00 and $5,000.00."),
        ("5000.01", "A top-up is between $10.00 and $5,000.00."),
        ("", "Enter an amount in dollars, such as 40 or 12.50."),
    ):
        answer = await browser.submit(TOP_UPS, {"amount": typed}, form_page="/billing")
        assert answer.status_code == 422, typed
        assert the(answer.text, "data-top-up-error").text == message
        assert the(answer.text, "data-top-up").find("input", name="amount", value=typed)

    answer = await browser.http.post(
        TOP_UPS, data={"amount": "4"}, headers=HTMX | {"X-CSRF-Token": browser.csrf_token}
    )
    assert answer.status_code == 200  # htmx swaps the form in, error and all
    assert the(answer.text, "data-top-up-error").text == "A top-up is between $10.00 and $5,000.00."
    assert "<html" not in answer.text
    async with database(settings) as sessions, sessions() as db:
        assert (
            await db.scalar(select(CreditTopUp.id).where(CreditTopUp.amount_cents < 1000)) is None
        )


async def test_when_stripe_is_down_the_form_says_so(settings: Settings, email: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    stripe_down = with_stripe(
        settings, api_base=closed, webhook_secret=None, public_base_url=AnyHttpUrl(closed)
    )
    async for browser in browser_for(stripe_down):
        await browser.sign_up(email)
        answer = await browser.submit(TOP_UPS, {"amount": "25"}, form_page="/billing")
        assert answer.status_code == 502
        assert "payment provider could not be reached" in the(answer.text, "data-top-up-error").text


async def test_only_a_signed_in_customer_tops_up(browser: Browser) -> None:
    answer = await browser.submit(TOP_UPS, {"amount": "25"}, form_page="/login")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login")
    assert elements((await browser.page("/")).text, "data-top-up") == []
