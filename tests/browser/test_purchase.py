"""Buying GPUs in Chromium, from the catalog to a running machine: configure, add to the cart,
pay on Stripe's (the emulator's) hosted page, and watch the instances start on the dashboard."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.chromium import NewContext, screenshot
from tests.browser.flows import (
    CHECKOUT_PAGE,
    DECLINED_CARD,
    H100,
    PAID_CARD,
    SUCCESS_PAGE,
    WAIT,
    add_h100s_to_cart,
    configure,
    fresh_email,
    pay_on_emulator,
    price_update,
    quote_total,
    sign_up,
    terminate_in_page,
)
from tests.support.platform import Platform

pytestmark = pytest.mark.slow

# Shown instead of Stripe's redirect to it (its icon inline: the emulator serves none).
HELD_BACK_PAGE = '<!doctype html><link rel="icon" href="data:,"><title>Paid</title>'


async def test_buy_h100s_pay_and_watch_them_start(new_context: NewContext, live: Platform) -> None:
    context = await new_context()
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.base_url)
    page = await context.new_page()
    await sign_up(page, fresh_email(), live.settings)

    # The catalog, then the configurator: its price is the server's quote, option by option.
    await page.get_by_role("link", name="NVIDIA", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/gpus/nvidia$"))
    await page.locator("main a[href='/gpus/nvidia-h100']").click()
    await expect(page).to_have_url(re.compile(r"/gpus/nvidia-h100"))
    await configure(page, H100)
    total = await quote_total(live.base_url, H100)
    await expect(page.locator("#price [data-total-cents]")).to_have_attribute(
        "data-total-cents", str(total)
    )

    # The machine image: the default is chosen; PyTorch instead (the price does not change).
    default = page.get_by_role("radio", name=re.compile(r"^Ubuntu 24\.04 with CUDA"))
    await expect(default).to_be_checked()
    async with price_update(page):
        await page.get_by_role("radio", name=re.compile(r"^PyTorch")).check()

    # Into the cart: the header counts it, the cart prices it the same and shows the image.
    await expect(page.locator("#cart-count")).to_have_text("0")
    await page.get_by_role("button", name="Add to cart").click()
    await expect(page).to_have_url(re.compile(r"/cart$"))
    await expect(page.locator("#cart-count")).to_have_text("1")
    lines = page.locator("[data-cart-line]")
    await expect(lines).to_have_count(1)
    await expect(lines.first.locator("[data-cart-image]")).to_contain_text("PyTorch")
    await expect(lines.first.locator("[data-line-description]")).to_have_text(
        "2 × NVIDIA H100 SXM · 24 vCPUs · 500 GB NVMe · 3 h · us-east-1"
    )
    await expect(lines.first.get_by_label("Machines")).to_have_value("1")
    await expect(page.locator("aside [data-total-cents]")).to_have_attribute(
        "data-total-cents", str(total)
    )
    await screenshot(page, "cart")

    # Stripe's page (the emulator's) asks for the same amount; the test card pays.
    await page.get_by_role("button", name="Checkout").click()
    await expect(page).to_have_url(CHECKOUT_PAGE, timeout=WAIT)
    dollars = f"USD {total // 100:,}.{total % 100:02d}"
    await expect(page.get_by_role("heading", level=1)).to_contain_text(dollars)
    await expect(page.locator("[data-line-item]")).to_contain_text("NVIDIA H100 SXM × 2")
    await expect(page.locator("[data-product-description]")).to_have_text(
        "24 vCPUs · 500 GB NVMe · 3 h · us-east-1"
    )
    await screenshot(page, "checkout")

    # Paid: straight to the dashboard, before the success page could confirm anything (Stripe's
    # redirect to it is held back), so the payment is confirmed by the webhook alone, meanwhile.
    held_back: asyncio.Queue[str] = asyncio.Queue()

    async def hold_back(route: Route) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        answer = await route.fetch(max_redirects=0)
        location = answer.headers.get("location", "")
        if answer.status != 303 or not SUCCESS_PAGE.search(location):
            await route.fulfill(response=answer)
            return
        held_back.put_nowait(location)
        await route.fulfill(content_type="text/html", body=HELD_BACK_PAGE)

    await page.route(CHECKOUT_PAGE, hold_back)
    await pay_on_emulator(page, PAID_CARD)
    success_url = await asyncio.wait_for(held_back.get(), WAIT / 1000)
    await page.unroute(CHECKOUT_PAGE, hold_back)
    await page.goto("/dashboard")
    await page.evaluate("window.loadedOnce = true")  # gone if the page were reloaded
    # Confirming the payment, creating the instance, booting it: the list polls throughout.
    await expect(page.locator("[data-polling]")).to_have_count(1)
    rows = page.locator("[data-instance-row]")
    await expect(rows).to_have_count(1, timeout=WAIT)
    row = rows.first
    await expect(row).to_have_attribute("data-instance-status", "provisioning")
    await expect(row.locator("[data-ssh-command]")).to_have_count(0)
    await expect(row).to_have_attribute("data-instance-status", "running", timeout=WAIT)
    assert await page.evaluate("window.loadedOnce === true"), "the dashboard was reloaded"
    await expect(row.locator("[data-instance-image]")).to_contain_text("PyTorch 2.6.0")
    await expect(page.locator("[data-polling]")).to_have_count(0)  # nothing left to watch

    ssh = row.locator("[data-ssh-command]")
    await expect(ssh).to_have_text(re.compile(r"^ssh \S+@\d+\.\d+\.\d+\.\d+"))
    copy = row.locator("button[data-copy]")
    await expect(copy).to_have_accessible_name("Copy")
    before = [await ssh.bounding_box(), await copy.bounding_box()]
    await copy.click()
    await expect(row.locator("[data-copy-feedback]")).to_have_text("Copied")
    await expect(copy).to_have_text("Copied")
    # "Copied" moves nothing: the command and the button keep their places and sizes.
    assert [await ssh.bounding_box(), await copy.bounding_box()] == before
    await expect(copy).to_have_text("Copy", timeout=5_000)
    assert await page.evaluate("navigator.clipboard.readText()") == (await ssh.inner_text()).strip()
    await screenshot(page, "dashboard")

    # The success page, visited late, shows the order paid and the bought item out of the cart.
    await page.goto(success_url)
    await expect(page.locator("#order-status")).to_have_attribute(
        "data-order-status", "paid", timeout=WAIT
    )
    await expect(page.locator("#cart-count")).to_have_text("0")
    await expect(page.locator("main [data-total-cents]")).to_have_attribute(
        "data-total-cents", str(total)
    )
    await expect(page.get_by_role("link", name="Go to your dashboard")).to_have_attribute(
        "href", "/dashboard"
    )

    # The order history lists the order as paid.
    await page.goto("/account/orders")
    orders = page.locator("[data-order-row]")
    await expect(orders).to_have_count(1)
    await expect(orders.first).to_have_attribute("data-order-status", "paid")
    await page.goto("/account")
    await screenshot(page, "account")

    # Terminating asks first, in the page, then the machine stops.
    await page.goto("/dashboard")
    await terminate_in_page(page, row)
    await expect(row).to_have_attribute(
        "data-instance-status", re.compile(r"^(stopping|terminated)$"), timeout=WAIT
    )


async def test_a_declined_card_then_cancel_leaves_the_cart_intact(
    page: Page, live: Platform
) -> None:
    await sign_up(page, fresh_email(), live.settings)
    total = await add_h100s_to_cart(page, live.base_url)

    await page.get_by_role("button", name="Checkout").click()
    await pay_on_emulator(page, DECLINED_CARD)
    await expect(page).to_have_url(CHECKOUT_PAGE)
    await expect(page.get_by_role("alert")).to_contain_text(re.compile("declined", re.I))

    await page.get_by_role("link", name="Back").click()
    await expect(page).to_have_url(re.compile(r"/checkout/canceled(\?|$)"), timeout=WAIT)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Checkout canceled")
    await page.get_by_role("link", name="Back to your cart").click()
    await expect(page).to_have_url(re.compile(r"/cart$"))
    await expect(page.locator("[data-cart-line]")).to_have_count(1)
    await expect(page.locator("#cart-count")).to_have_text("1")
    await expect(page.locator("aside [data-total-cents]")).to_have_attribute(
        "data-total-cents", str(total)
    )


async def test_cart_quantity_changes_update_the_header_count(page: Page, live: Platform) -> None:
    await sign_up(page, fresh_email(), live.settings)
    total = await add_h100s_to_cart(page, live.base_url)
    await expect(page.locator("#cart-count")).to_have_text("1")
    await page.evaluate("window.loadedOnce = true")

    quantity = page.locator("[data-cart-line]").first.get_by_label("Machines")
    await quantity.fill("3")
    await quantity.dispatch_event("change")
    await expect(page.locator("#cart-count")).to_have_text("3")
    await expect(page.locator("aside [data-total-cents]")).to_have_attribute(
        "data-total-cents", str(3 * total)
    )

    await page.get_by_role("button", name="Remove").click()
    await expect(page.locator("[data-cart-empty]")).to_be_visible()
    await expect(page.locator("#cart-count")).to_have_text("0")
    assert await page.evaluate("window.loadedOnce === true"), "the cart page was reloaded"


async def test_every_lines_price_lines_up_on_a_desktop_and_a_phone(
    page: Page, live: Platform
) -> None:
    await sign_up(page, fresh_email(), live.settings)
    await add_h100s_to_cart(page, live.base_url)
    # A line of other lengths: another model, region, size and duration.
    await page.goto(
        "/gpus/nvidia-a100?gpu_count=1&vcpus=12&storage_gb=100&hours=5&region=eu-central-1"
    )
    await page.get_by_role("button", name="Add to cart").click()
    await expect(page.locator("[data-cart-line]")).to_have_count(2)
    for width, height in ((1280, 900), (390, 844)):
        await page.set_viewport_size({"width": width, "height": height})
        boxes = [
            await price.bounding_box() for price in await page.locator("[data-line-price]").all()
        ]
        shown = [box for box in boxes if box is not None]
        assert len(shown) == 2, width
        left = {round(box["x"]) for box in shown}
        right = {round(box["x"] + box["width"]) for box in shown}
        assert len(left) == 1, (width, shown)
        assert len(right) == 1, (width, shown)
        assert max(right) <= width, (width, shown)
