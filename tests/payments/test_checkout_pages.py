"""Back from Stripe: the success page fulfils the owner's order (and only theirs), shows its live
status while a bank payment settles, and the canceled page leaves the cart as it was."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select

from computebill.config import Settings
from computebill.devserver.scratch import database
from computebill.orders.models import Order, OrderStatus
from computebill.payments.gateway import StripeGateway
from computebill.state import app_state
from tests.cart.test_cart_pages import H100_UNIT_TOTAL, add, header_count
from tests.support.markup import elements
from tests.support.pages import Browser
from tests.support.shopper import cancel_link, pay, pay_by_bank

STATUS = re.compile(r'data-order-status="([a-z_]+)"')
BANK_ACCOUNT_SETTLES = "000123456789"


def order_status(page: str) -> str:
    match = STATUS.search(page)
    assert match, "no order status in the page"
    return match.group(1)


async def checkout(browser: Browser, email: str) -> str:
    """Sign up, add the H100 configuration and press Checkout: the Stripe page's URL."""
    await browser.sign_up(email)
    await add(browser)
    answer = await browser.submit("/checkout", form_page="/cart")
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def local(url: str) -> str:
    """The path and query of where Stripe sends the customer back to."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def stored_status(settings: Settings, session_id: str) -> OrderStatus:
    async with database(settings) as sessions, sessions() as db:
        status = await db.scalar(
            select(Order.status).where(Order.checkout_session_id == session_id)
        )
    assert status is not None, session_id
    return status


async def test_after_paying_the_owner_sees_the_order_paid(
    shop_browser: Browser, email: str
) -> None:
    checkout_url = await checkout(shop_browser, email)
    paid = await pay(checkout_url)
    assert paid.status_code == 303
    success = local(paid.headers["location"])
    assert success.startswith("/checkout/success?session_id=cs_")

    # No webhook reaches this app: the page itself fulfils, having asked Stripe.
    page = await shop_browser.page(success)
    assert page.status_code == 200
    assert order_status(page.text) == "paid"
    assert "Payment received" in page.text
    assert "$66.80" in page.text
    assert f'data-total-cents="{H100_UNIT_TOTAL}"' in page.text
    [bought] = elements(page.text, "data-order-line")
    assert bought.text.startswith(
        "2 × NVIDIA H100 SXM · 24 vCPUs · 500 GB NVMe · 10 h · us-east-1 Machines: 1 $66.80"
    )
    assert 'hx-trigger="every 2s"' not in page.text  # nothing left to wait for
    assert 'href="/dashboard"' in page.text
    assert header_count(page.text) == 0  # what was bought left the cart

    again = await shop_browser.page(success)  # a reload fulfils nothing twice
    assert order_status(again.text) == "paid"
    assert header_count((await shop_browser.page("/cart")).text) == 0


async def test_another_user_gets_a_404_and_the_order_is_untouched(
    shop_browser: Browser, other_browser: Browser, email: str, settings: Settings
) -> None:
    checkout_url = await checkout(shop_browser, email)
    success = local((await pay(checkout_url)).headers["location"])
    session_id = parse_qs(urlsplit(success).query)["session_id"][0]
    await other_browser.sign_up("other-" + email)

    for path in (success, success.replace("/checkout/success", "/checkout/success/status")):
        answer = await other_browser.page(path)
        assert answer.status_code == 404, path
        assert "data-order-status" not in answer.text
        assert "66.80" not in answer.text
        assert "NVIDIA H100" not in answer.text
    assert await stored_status(settings, session_id) is OrderStatus.PENDING  # no effect

    assert order_status((await shop_browser.page(success)).text) == "paid"


async def test_a_visitor_who_is_not_signed_in_logs_in_first(browser: Browser) -> None:
    answer = await browser.page("/checkout/success?session_id=cs_test_123")
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location.path == "/login"
    assert (
        unquote(parse_qs(location.query)["next"][0]) == "/checkout/success?session_id=cs_test_123"
    )


async def test_an_unknown_session_is_not_found(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    answer = await browser.page("/checkout/success?session_id=cs_test_nobody")
    assert answer.status_code == 404


async def test_a_delayed_bank_payment_shows_confirming_until_it_is_paid(
    shop_browser: Browser, email: str
) -> None:
    checkout_url = await checkout(shop_browser, email)
    answer = await pay_by_bank(checkout_url, BANK_ACCOUNT_SETTLES)
    assert answer.status_code == 303
    success = local(answer.headers["location"])

    page = (await shop_browser.page(success)).text
    assert order_status(page) == "pending"
    assert "Confirming payment…" in page
    status_path = success.replace("/checkout/success", "/checkout/success/status")
    assert f'hx-get="{status_path}"' in page
    assert 'hx-trigger="every 2s"' in page
    assert header_count(page) == 1  # not bought yet

    # What htmx polls: the status box alone, until the bank payment settles (3 s here).
    deadline = time.monotonic() + 20
    while True:
        fragment = await shop_browser.http.get(status_path, headers={"HX-Request": "true"})
        assert fragment.status_code == 200
        assert "<html" not in fragment.text
        if order_status(fragment.text) != "pending" or time.monotonic() > deadline:
            break
        assert 'hx-trigger="every 2s"' in fragment.text
        await asyncio.sleep(0.5)
    assert order_status(fragment.text) == "paid"
    assert "hx-trigger" not in fragment.text  # the polling stops
    assert 'hx-swap-oob="true"' in fragment.text
    assert header_count(fragment.text) == 0


async def test_the_canceled_page_says_nothing_was_charged_and_the_cart_is_intact(
    shop_browser: Browser, email: str
) -> None:
    checkout_url = await checkout(shop_browser, email)
    back = local(await cancel_link(checkout_url))  # the hosted page's Back link
    assert back.startswith("/checkout/canceled")

    page = await shop_browser.page(back)
    assert page.status_code == 200
    assert "Nothing was charged" in page.text
    assert "cart is intact" in page.text
    assert 'href="/cart"' in page.text
    assert header_count(page.text) == 1
    assert header_count((await shop_browser.page("/cart")).text) == 1


class CountingGateway(StripeGateway):
    """The app's Stripe, counting how often a Checkout Session is read."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.retrievals = 0

    async def retrieve_checkout(self, session_id: str) -> dict[str, Any]:
        self.retrievals += 1
        return await super().retrieve_checkout(session_id)


async def test_the_polled_status_asks_stripe_at_most_every_ten_seconds(
    shop_browser: Browser, email: str, settings: Settings
) -> None:
    checkout_url = await checkout(shop_browser, email)
    answer = await pay_by_bank(checkout_url, BANK_ACCOUNT_SETTLES)
    success = local(answer.headers["location"])
    session_id = parse_qs(urlsplit(success).query)["session_id"][0]
    state = app_state(shop_browser.app)
    gateway = CountingGateway(state.settings)
    state.gateway = gateway

    assert order_status((await shop_browser.page(success)).text) == "pending"
    assert gateway.retrievals == 1  # the success page asks Stripe
    status_path = success.replace("/checkout/success", "/checkout/success/status")
    for _ in range(5):  # what htmx polls every 2 s: the stored state
        fragment = await shop_browser.http.get(status_path, headers={"HX-Request": "true"})
        assert order_status(fragment.text) == "pending"
    assert gateway.retrievals == 1

    async with database(settings) as sessions, sessions() as db:
        order_id = await db.scalar(select(Order.id).where(Order.checkout_session_id == session_id))
    key = f"{state.settings.redis_namespace}:checkout-confirm:{order_id}"
    assert 0 < await state.redis.ttl(key) <= 10
    await state.redis.delete(key)  # as if the ten seconds had passed
    await shop_browser.http.get(status_path, headers={"HX-Request": "true"})
    assert gateway.retrievals == 2
