"""The configurator explains itself, in Chromium: hours checked by the server as they are typed
(the error beside the field, the price box saying why there is no price), Add to cart refused
the same way, duration presets, the same without JavaScript, and on a phone the total and Add
to cart kept in view."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable

import pytest
from playwright.async_api import Browser, Locator, Page, Response, expect

from tests.browser.chromium import Problems, screenshot
from tests.browser.flows import (
    H100,
    WAIT,
    fresh_email,
    price_update,
    quote_total,
    shown_total,
    sign_up,
)
from tests.support.platform import Platform

pytestmark = pytest.mark.slow

CONFIGURATOR = "/gpus/nvidia-h100?gpu_count=2&vcpus=24&storage_gb=500&hours=3"
HOURS_RULE = "Hours must be a whole number from 1 to 720."
NO_PRICE = "No price: hours must be a whole number from 1 to 720."


async def status_of(navigation: Awaitable[Response | None]) -> int:
    response = await navigation
    assert response is not None
    return response.status


def hours_field(page: Page) -> Locator:
    return page.get_by_role("spinbutton", name="Hours", exact=True)


async def expect_hours_refused(page: Page) -> None:
    """The error beside the hours field, which is marked invalid and described by it; the
    price box says why there is no price, and shows no total."""
    hours = hours_field(page)
    await expect(hours).to_have_attribute("aria-invalid", "true")
    await expect(hours).to_have_accessible_description(HOURS_RULE)
    described_by = await hours.get_attribute("aria-describedby")
    assert described_by
    error = page.locator(f"#{described_by}")
    await expect(error).to_have_text(HOURS_RULE)
    field_box, error_box = await hours.bounding_box(), await error.bounding_box()
    assert field_box
    assert error_box
    # Beside the field: right under it, where it starts.
    below = error_box["y"] - (field_box["y"] + field_box["height"])
    assert 0 <= below <= 16, (field_box, error_box)
    assert abs(error_box["x"] - field_box["x"]) <= 2, (field_box, error_box)
    await expect(page.locator("#price")).to_contain_text(NO_PRICE)
    await expect(page.locator("[data-total-cents]")).to_have_count(0)


async def expect_hours_accepted(page: Page) -> None:
    hours = hours_field(page)
    await expect(hours).not_to_have_attribute("aria-invalid", "true")
    await expect(hours).not_to_have_attribute("aria-describedby", re.compile(".*"))
    await expect(page.locator("#hours-error")).to_be_hidden()
    await expect(page.locator("#price")).not_to_contain_text("No price")


async def test_hours_are_checked_as_they_are_typed(page: Page, live: Platform) -> None:
    await page.goto(CONFIGURATOR)
    hours = hours_field(page)
    for typed in ("0", "1000"):
        async with price_update(page):
            await hours.fill(typed)  # typing only (no change event): the input is checked
        await expect_hours_refused(page)
        await expect(hours).to_be_focused()  # the field being typed in is left alone

    async with price_update(page):
        await hours.fill("5")
    await expect_hours_accepted(page)
    expected = await quote_total(live.base_url, H100 | {"hours": 5})
    await expect(page.locator("[data-total-cents]")).to_have_attribute(
        "data-total-cents", str(expected), timeout=WAIT
    )
    await expect(page.locator("#price")).to_contain_text("for 5 hours")


async def test_add_to_cart_with_bad_hours_says_why_and_adds_nothing(
    page: Page, live: Platform
) -> None:
    await sign_up(page, fresh_email(), live.settings, next_page=CONFIGURATOR)
    await expect(page.locator("#cart-count")).to_have_text("0")
    hours = hours_field(page)
    await hours.fill("1000")
    async with page.expect_response(lambda r: r.url.endswith("/cart/items")) as answer:
        await page.get_by_role("button", name="Add to cart").click()
    assert (await answer.value).status == 200  # htmx swaps the refusal in
    await expect(page.locator("[data-add-error]")).to_have_text(
        "That configuration was not added: hours must be a whole number from 1 to 720."
    )
    await expect_hours_refused(page)
    await expect(hours).to_be_focused()  # to fix them
    await expect(page).to_have_url(re.compile(re.escape(CONFIGURATOR) + "$"))
    await expect(page.locator("#cart-count")).to_have_text("0")
    await page.goto("/cart")
    await expect(page.locator("[data-cart-line]")).to_have_count(0)

    # Pay as you go takes no hours: bad ones in the options do not stop it asking the server,
    # whose answer (here: no credit yet) is shown.
    await page.goto(CONFIGURATOR)
    await hours_field(page).fill("1000")
    async with page.expect_response(lambda r: r.url.endswith("/instances/pay-as-you-go")):
        await page.get_by_role("button", name="Launch pay as you go").click()
    await expect(page.locator("#pay-as-you-go-result")).not_to_be_empty()


async def test_duration_presets_set_the_hours_and_the_price_follows(
    page: Page, live: Platform
) -> None:
    await page.goto(CONFIGURATOR)
    presets = page.get_by_role("group", name="Duration")
    await expect(presets.get_by_role("button")).to_have_text(["1 h", "8 h", "24 h", "1 week"])
    for label, hours in (("8 h", 8), ("1 week", 168), ("1 h", 1)):
        async with price_update(page):
            await presets.get_by_role("button", name=label).click()
        await expect(hours_field(page)).to_have_value(str(hours))
        await expect(presets.get_by_role("button", name=label)).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(presets.locator("[aria-pressed=true]")).to_have_count(1)
        await expect(page.locator("[data-total-cents]")).to_have_attribute(
            "data-total-cents", str(await quote_total(live.base_url, H100 | {"hours": hours}))
        )
    assert page.url.endswith(CONFIGURATOR)  # priced in place, not by loading the page again

    # Typing a preset's hours presses it; other hours press none.
    async with price_update(page):
        await hours_field(page).fill("24")
    await expect(presets.get_by_role("button", name="24 h")).to_have_attribute(
        "aria-pressed", "true"
    )
    async with price_update(page):
        await hours_field(page).fill("25")
    await expect(presets.locator("[aria-pressed=true]")).to_have_count(0)
    assert await shown_total(page) == await quote_total(live.base_url, H100 | {"hours": 25})

    # Enter in the field prices what was typed, not a preset.
    await hours_field(page).fill("50")
    async with price_update(page):
        await hours_field(page).press("Enter")
    await expect(hours_field(page)).to_have_value("50")
    await expect(page.locator("[data-total-cents]")).to_have_attribute(
        "data-total-cents", str(await quote_total(live.base_url, H100 | {"hours": 50}))
    )


@pytest.fixture
async def no_script_page(chromium: Browser, live: Platform) -> AsyncIterator[Page]:
    problems = Problems()
    context = await chromium.new_context(base_url=live.base_url, java_script_enabled=False)
    context.on("page", problems.watch)
    try:
        yield await context.new_page()
    finally:
        await context.close()
    assert not problems.seen, "\n".join(problems.seen)


async def test_without_javascript_the_server_refuses_bad_hours_beside_the_field(
    no_script_page: Page, live: Platform
) -> None:
    page = no_script_page
    await page.goto(CONFIGURATOR)
    await hours_field(page).fill("0")
    async with page.expect_navigation() as updated:
        await page.get_by_role("button", name="Update price").click()
    assert await status_of(updated.value) == 422
    await expect_hours_refused(page)

    # Add to cart sends the configuration the page shows (hours 0): refused the same way.
    async with page.expect_navigation() as added:
        await page.get_by_role("button", name="Add to cart").click()
    assert await status_of(added.value) == 422
    await expect(page.locator("[data-add-error]")).to_contain_text(
        "That configuration was not added: hours must be"
    )
    await expect_hours_refused(page)

    # A preset is a button of the same form: the page comes back priced for it.
    async with page.expect_navigation() as preset:
        await page.get_by_role("button", name="8 h").click()
    assert await status_of(preset.value) == 200
    await expect_hours_accepted(page)
    await expect(hours_field(page)).to_have_value("8")
    assert await shown_total(page) == await quote_total(live.base_url, H100 | {"hours": 8})

    # Enter in the hours field sends what was typed, not the first preset.
    await hours_field(page).fill("50")
    async with page.expect_navigation():
        await hours_field(page).press("Enter")
    await expect(hours_field(page)).to_have_value("50")
    assert await shown_total(page) == await quote_total(live.base_url, H100 | {"hours": 50})


async def in_viewport(page: Page, locator: Locator) -> bool:
    box = await locator.bounding_box()
    height = await page.evaluate("innerHeight")
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


async def above_the_price(page: Page, locator: Locator) -> bool:
    """Not hidden under the price held at the bottom."""
    box, bar = await locator.bounding_box(), await page.locator("[data-price-bar]").bounding_box()
    return box is not None and bar is not None and box["y"] + box["height"] <= bar["y"]


async def test_on_a_phone_the_total_and_add_to_cart_stay_in_view(
    page: Page, live: Platform
) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(CONFIGURATOR)
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    total = page.locator("[data-total-cents]")
    add = page.get_by_role("button", name="Add to cart")
    form = page.locator("#configure")
    first, last = form.locator("select").first, form.locator("input[name=image]").last
    for option in (last, first, hours_field(page)):
        await option.focus()  # as the keyboard reaches it: scrolled to, clear of the price
        assert await in_viewport(page, option)
        assert await above_the_price(page, option)
        assert await in_viewport(page, total)
        assert await in_viewport(page, add)
    # Changing an option there: the new price shows in the same place. The vCPUs follow the
    # GPU count to its shape's, so the price is the quote of what the options now say.
    await first.scroll_into_view_if_needed()
    async with price_update(page):
        await page.locator("select[name=gpu_count]").select_option("4")
    vcpus = int(await page.locator("select[name=vcpus]").input_value())
    assert vcpus != H100["vcpus"]
    expected = await quote_total(live.base_url, H100 | {"gpu_count": 4, "vcpus": vcpus})
    await expect(total).to_have_attribute("data-total-cents", str(expected))
    assert await in_viewport(page, total)
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    await screenshot(page, "configurator-phone")

    # On a desktop the price stays in its column beside the options, not held at the bottom.
    await page.set_viewport_size({"width": 1280, "height": 800})
    await page.evaluate("scrollTo(0, 0)")
    options, price = await form.bounding_box(), await page.locator("#price").bounding_box()
    assert options
    assert price
    assert price["x"] >= options["x"] + options["width"]
    assert price["y"] < options["y"] + options["height"]
