"""The cart pages: adding from the configurator, changing and removing lines (with and without
htmx), price-change notices, checkout to Stripe, and refusing other users and forged forms."""

from __future__ import annotations

import re
from typing import Any

import httpx
from pydantic import AnyHttpUrl

from computebill.config import Settings
from computebill.devserver.embedded import free_port
from tests.support.catalog import activate, admin_change, set_rate
from tests.support.markup import elements, the
from tests.support.pages import Browser, browser_for
from tests.support.stripe import EmulatorProcess, with_stripe

H100 = {"gpu": "nvidia-h100", "gpu_count": 2, "vcpus": 24, "storage_gb": 500, "hours": 10}
H100_UNIT_TOTAL = 6680  # (2 × 249 + 24 × 5 + 500 × 0.1) ¢ × 10 h
CONFIGURATOR = "/gpus/nvidia-h100?gpu_count=2&vcpus=24&storage_gb=500&hours=10"
HTMX = {"HX-Request": "true"}

LINE = re.compile(r"<li[^>]*\bdata-cart-line\b[^>]*>.*?</li>", re.S)
COUNT = re.compile(r'<span id="cart-count"[^>]*>(\d+)</span>')
TOTAL = re.compile(r'data-total-cents="(\d+)"')
ITEM_ID = re.compile(r'data-item-id="([0-9a-f-]{36})"')


def lines(page: str) -> list[str]:
    return LINE.findall(page)


def header_count(page: str) -> int:
    match = COUNT.search(page)
    assert match, "no cart count in the page"
    return int(match.group(1))


def total(page: str) -> int:
    match = TOTAL.search(page)
    assert match, "no total in the page"
    return int(match.group(1))


def item_ids(page: str) -> list[str]:
    return ITEM_ID.findall(page)


async def add(browser: Browser, item: dict[str, Any] | None = None) -> httpx.Response:
    """Press "Add to cart" on the configurator, as a browser without JavaScript sends it."""
    return await browser.submit("/cart/items", item or H100, form_page=CONFIGURATOR)


async def htmx_post(browser: Browser, path: str, data: dict[str, Any]) -> httpx.Response:
    """What htmx sends: the form fields, and the CSRF token in its header."""
    headers = HTMX | {"X-CSRF-Token": browser.csrf_token}
    return await browser.http.post(path, data=data, headers=headers)


async def test_the_configurator_offers_add_to_cart_with_its_options(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    page = (await browser.page(CONFIGURATOR)).text
    form = re.search(r'<form method="post" action="/cart/items".*?</form>', page, re.S)
    assert form, page
    assert ">Add to cart</button>" in form.group(0)
    assert 'name="csrf_token"' in form.group(0)
    assert 'hx-include="#configure"' in form.group(0)  # the options' current values, with htmx
    assert 'id="configure"' in page
    # Without JavaScript: the configuration the page shows (and prices).
    for name, value in (("gpu_count", 2), ("vcpus", 24), ("storage_gb", 500), ("hours", 10)):
        assert f'name="{name}" value="{value}"' in form.group(0)


async def test_adding_shows_the_line_with_its_configuration_and_the_header_count(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    answer = await add(browser)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/cart"

    page = (await browser.page("/cart")).text
    [line] = lines(page)
    assert (
        the(line, "data-line-description").text
        == "2 × NVIDIA H100 SXM · 24 vCPUs · 500 GB NVMe · 10 h · us-east-1"
    )
    assert the(line, "data-line-machines").text == "Machines: 1"
    assert the(line, "data-line-total").text == "$66.80"
    assert 'for="quantity-' in line
    assert ">Machines</span>" in line
    assert the(line, "data-quantity-meaning").text == (
        "Machines: how many identical machines to start; each has 2 × NVIDIA H100 SXM."
    )
    assert header_count(page) == 1
    assert total(page) == H100_UNIT_TOTAL
    assert ">Checkout</button>" in page

    # The same configuration again (this time as htmx sends it): one line, quantity 2.
    again = await htmx_post(browser, "/cart/items", H100)
    assert again.status_code == 204
    assert again.headers["hx-redirect"] == "/cart"
    page = (await browser.page("/cart")).text
    [line] = lines(page)
    assert 'value="2"' in line
    assert header_count(page) == 2
    assert total(page) == 2 * H100_UNIT_TOTAL


PRICE_COLUMN = re.compile(
    r'<div class="([^"]*grid-cols-[^"]*)">\s*<div>.*?<div class="text-right" data-line-price>', re.S
)


async def test_every_lines_price_is_in_the_same_column(browser: Browser, email: str) -> None:
    """Lines of unlike lengths (another model, region and duration, a longer quantity) put their
    prices in a column of one width, on every screen: the grid's, the same on every line."""
    await browser.sign_up(email)
    await add(browser)
    await add(
        browser,
        {
            "gpu": "nvidia-a100",
            "gpu_count": 1,
            "vcpus": 12,
            "storage_gb": 100,
            "hours": 5,
            "region": "eu-central-1",
            "quantity": 8,
        },
    )
    page = (await browser.page("/cart")).text
    shown = lines(page)
    assert len(shown) == 2
    columns = [PRICE_COLUMN.search(line) for line in shown]
    assert all(columns), "a line's price is not in the price column"
    [grid] = {column.group(1) for column in columns if column}
    assert "grid-cols-[minmax(0,1fr)_7.5rem]" in grid  # narrow screens
    assert "sm:grid-cols-[minmax(0,1fr)_10rem]" in grid
    assert [len(elements(line, "data-line-price")) for line in shown] == [1, 1]
    assert [the(line, "data-line-price").text.startswith("$") for line in shown] == [True, True]


async def test_an_invalid_configuration_is_refused_with_a_message(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    # Without JavaScript: the configurator again, as sent, the error beside the hours field
    # (as the price box's check words it) and beside the button.
    refused = await add(browser, H100 | {"hours": 100_000})
    assert refused.status_code == 422
    assert the(refused.text, "data-add-error").text == (
        "That configuration was not added: hours must be a whole number from 1 to 720."
    )
    field = re.search(r'<input[^>]*\bid="hours"[^>]*>', refused.text)
    assert field
    assert 'aria-invalid="true"' in field.group(0)
    assert 'value="100000"' in field.group(0)
    assert the(refused.text, "data-field-error").text == (
        "Hours must be a whole number from 1 to 720."
    )
    assert "No price: hours must be" in the(refused.text, "data-no-price").text
    assert lines(refused.text) == []

    # Hours as htmx sends an emptied field: beside the button, and out of band beside the field
    # and in the price box.
    inline = await htmx_post(browser, "/cart/items", H100 | {"hours": ""})
    assert inline.status_code == 200  # htmx swaps it in beside the button
    assert inline.text.lstrip().startswith("<p")
    assert "hours must be a whole number" in the(inline.text, "data-add-error").text
    assert the(inline.text, "data-field-error").attrs["hx-swap-oob"] == "true"
    assert re.search(r'<div id="price"[^>]*hx-swap-oob="true"', inline.text)
    assert "<html" not in inline.text

    # An option the page does not offer: said beside the button and in the price box.
    inline = await htmx_post(browser, "/cart/items", H100 | {"vcpus": 7})
    assert inline.status_code == 200
    assert "vcpus 7 is not offered" in the(inline.text, "data-add-error").text
    assert the(inline.text, "data-field-error").text == ""
    assert lines((await browser.page("/cart")).text) == []

    # Not signed in: the refusal first, not the login page.
    await browser.submit("/logout", {}, form_page="/")
    anonymous = await add(browser, H100 | {"hours": 0})
    assert anonymous.status_code == 422
    assert 'href="/login"' in anonymous.text
    assert "data-add-error" in anonymous.text


async def test_changing_the_quantity_in_place_updates_totals_and_the_header_count(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    await add(browser)
    await add(browser, H100 | {"gpu": "nvidia-a100", "gpu_count": 1})
    page = (await browser.page("/cart")).text
    h100_id, a100_id = item_ids(page)
    before = total(page)

    changed = await htmx_post(browser, f"/cart/items/{h100_id}/quantity", {"quantity": "3"})
    assert changed.status_code == 200
    fragment = changed.text
    assert "<html" not in fragment  # the cart partial, not a page
    assert fragment.startswith('<div id="cart">') or '<div id="cart">' in fragment
    assert 'hx-swap-oob="true"' in fragment
    assert header_count(fragment) == 4
    assert total(fragment) == before + 2 * H100_UNIT_TOTAL
    assert "Quantity updated." in fragment

    # Without JavaScript: the form posts and the browser is sent back to the cart.
    plain = await browser.submit(
        f"/cart/items/{a100_id}/quantity", {"quantity": "8"}, form_page="/cart"
    )
    assert plain.status_code == 303
    assert plain.headers["location"] == "/cart"
    page = (await browser.page("/cart")).text
    assert header_count(page) == 3 + 8


async def test_a_quantity_outside_one_to_eight_is_refused_and_nothing_changes(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    await add(browser)
    [item_id] = item_ids((await browser.page("/cart")).text)
    for quantity in ("0", "9"):
        refused = await browser.submit(
            f"/cart/items/{item_id}/quantity", {"quantity": quantity}, form_page="/cart"
        )
        assert refused.status_code == 422
        assert "between 1 and 8" in refused.text
    assert header_count((await browser.page("/cart")).text) == 1


async def test_removing_updates_totals_and_the_count_down_to_the_empty_state(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    await add(browser)
    await add(browser, H100 | {"gpu": "nvidia-a100", "gpu_count": 1})
    page = (await browser.page("/cart")).text
    h100_id, a100_id = item_ids(page)

    removed = await htmx_post(browser, f"/cart/items/{h100_id}/remove", {})
    assert removed.status_code == 200
    assert item_ids(removed.text) == [a100_id]
    assert header_count(removed.text) == 1
    assert total(removed.text) == total(page) - H100_UNIT_TOTAL

    last = await browser.submit(f"/cart/items/{a100_id}/remove", form_page="/cart")
    assert last.status_code == 303
    empty = (await browser.page("/cart")).text
    assert lines(empty) == []
    assert "Your cart is empty" in empty
    assert 'href="/"' in empty  # the way back to the catalog
    assert header_count(empty) == 0
    assert ">Checkout</button>" not in empty


async def test_another_users_items_are_not_found_and_stay_as_they_are(
    browser: Browser, other_browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    await add(browser)
    [item_id] = item_ids((await browser.page("/cart")).text)
    await other_browser.sign_up("other-" + email)

    for path, data in (
        (f"/cart/items/{item_id}/quantity", {"quantity": "5"}),
        (f"/cart/items/{item_id}/remove", {}),
    ):
        answer = await other_browser.submit(path, data, form_page="/cart")
        assert answer.status_code == 404, path
        assert "NVIDIA H100" not in answer.text
    page = (await browser.page("/cart")).text
    assert item_ids(page) == [item_id]
    assert header_count(page) == 1


async def test_a_price_change_is_announced_and_a_withdrawn_model_is_marked(
    browser: Browser, email: str, settings: Settings
) -> None:
    await browser.sign_up(email)
    await add(browser, H100 | {"gpu": "amd-mi355x"})
    await add(browser, H100 | {"gpu": "amd-mi250x"})
    await admin_change(settings, browser.app, set_rate("amd-mi355x", 499))
    await admin_change(settings, browser.app, activate("amd-mi250x", False))
    try:
        page = (await browser.page("/cart")).text
        changed, withdrawn = lines(page)
        assert "data-price-changed" in changed
        assert "$96.80" in changed  # before: (2 × 399 + 120 + 50) ¢ × 10 h
        assert "$116.80" in changed  # now: (2 × 499 + 120 + 50) ¢ × 10 h
        assert 'data-available="false"' in withdrawn
        assert "No longer available" in withdrawn
        assert total(page) == 11680  # what can no longer be bought is not in the total
        checkout = re.search(r"<button[^>]*>Checkout</button>", page)
        assert checkout
        assert "disabled" in checkout.group(0)
    finally:
        await admin_change(settings, browser.app, set_rate("amd-mi355x", 399))
        await admin_change(settings, browser.app, activate("amd-mi250x", True))


async def test_checkout_sends_the_customer_to_stripes_page(
    shop_browser: Browser, checkout_emulator: EmulatorProcess, email: str
) -> None:
    await shop_browser.sign_up(email)
    await add(shop_browser)
    answer = await shop_browser.submit("/checkout", form_page="/cart")
    assert answer.status_code == 303
    checkout_url = answer.headers["location"]
    assert checkout_url.startswith(checkout_emulator.base_url)
    async with httpx.AsyncClient() as stripe_page:
        hosted = await stripe_page.get(checkout_url)
    assert hosted.status_code == 200
    assert "USD 66.80" in hosted.text  # priced from the order, as the cart showed
    # Until it is paid the cart is untouched; a second press opens the same checkout.
    assert header_count((await shop_browser.page("/cart")).text) == 1
    again = await shop_browser.submit("/checkout", form_page="/cart")
    assert again.headers["location"] == checkout_url


async def test_when_stripe_is_down_the_cart_page_says_so_and_nothing_is_lost(
    settings: Settings, email: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    stripe_down = with_stripe(
        settings, api_base=closed, webhook_secret=None, public_base_url=AnyHttpUrl(closed)
    )
    async for browser in browser_for(stripe_down):
        await browser.sign_up(email)
        await add(browser)
        answer = await browser.submit("/checkout", form_page="/cart")
        assert answer.status_code == 502
        assert "payment provider could not be reached" in answer.text
        assert 'role="alert"' in answer.text
        assert len(lines(answer.text)) == 1  # the cart, as it was
        assert header_count((await browser.page("/cart")).text) == 1


async def test_checking_out_an_empty_cart_says_so(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    await browser.page("/cart")
    answer = await browser.submit("/checkout", form_page="/")
    assert answer.status_code == 422
    assert "The cart is empty." in answer.text


async def test_the_cart_forms_need_the_csrf_token(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    await add(browser)
    [item_id] = item_ids((await browser.page("/cart")).text)
    forged = {"csrf_token": "not-the-token"}
    for path, data in (
        ("/cart/items", H100),
        (f"/cart/items/{item_id}/quantity", {"quantity": "5"}),
        (f"/cart/items/{item_id}/remove", {}),
        ("/checkout", {}),
    ):
        assert (await browser.http.post(path, data=data)).status_code == 403, path
        assert (await browser.http.post(path, data=forged | data)).status_code == 403, path
    page = (await browser.page("/cart")).text
    assert item_ids(page) == [item_id]
    assert header_count(page) == 1
