"""What a customer does in the browser, step by step, for the browser tests to combine."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
from playwright.async_api import Locator, Page, expect

from computebill.config import Settings
from tests.support.admins import make_admin
from tests.support.mailbox import VERIFY_EMAIL, emailed_token
from tests.support.platform import Platform

PASSWORD = "correct horse battery"
PAID_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
# The configuration of the issue: H100 ×2, 24 vCPUs, 500 GB, 3 hours.
H100 = {"gpu": "nvidia-h100", "gpu_count": 2, "vcpus": 24, "storage_gb": 500, "hours": 3}
WAIT = 30_000  # ms: bounded, generous for a shared 2-core machine
CHECKOUT_PAGE = re.compile(r"/c/pay/cs_")
SUCCESS_PAGE = re.compile(r"/checkout/success\?session_id=cs_")


def fresh_email() -> str:
    return f"browser-{secrets.token_hex(5)}@example.com"


async def sign_up(page: Page, email: str, settings: Settings, *, next_page: str = "/") -> None:
    """Sign up, then open the verification link from the e-mail and confirm it, so the new
    customer can buy; the page then goes back to `next_page`."""
    await page.goto(f"/signup?next={next_page}")
    await page.get_by_label("Name").fill("Browser Test")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    await expect(page.locator("[data-unverified-banner]")).to_be_visible()
    token = await emailed_token(settings, email, VERIFY_EMAIL)
    await page.goto(f"{VERIFY_EMAIL}?token={token}")
    await page.get_by_role("button", name="Verify my address").click()
    await expect(page.locator('[data-verify-email="verified"]')).to_be_visible()
    await expect(page.locator("[data-unverified-banner]")).to_have_count(0)
    await page.goto(next_page)


async def log_in(page: Page, email: str, *, next_page: str = "/") -> None:
    await page.goto(f"/login?next={next_page}")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


def price_update(page: Page) -> Any:
    """Waits (as `async with`) for the server's answer with the new price box."""
    return page.expect_response(lambda response: "/price?" in response.url, timeout=WAIT)


async def configure(page: Page, configuration: dict[str, Any]) -> None:
    """Choose the options on the configurator page, each change answered by the server's new
    price box (htmx) before the next."""
    for name in ("gpu_count", "vcpus", "storage_gb", "region"):
        if name in configuration:
            async with price_update(page):
                await page.locator(f"select[name={name}]").select_option(str(configuration[name]))
    if "hours" in configuration:
        hours = page.locator("input[name=hours]")
        async with price_update(page):
            await hours.fill(str(configuration["hours"]))
            await hours.dispatch_event("change")


async def quote_total(base_url: str, configuration: dict[str, Any]) -> int:
    """The server's price for the configuration, from the JSON API."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        answer = await http.post("/api/v1/quotes", json=configuration)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total_cents"])


async def shown_total(page: Page) -> int:
    value = await page.locator("[data-total-cents]").get_attribute("data-total-cents")
    assert value is not None
    return int(value)


async def pay_on_emulator(page: Page, card: str) -> None:
    """Fill the emulator's hosted checkout page (like Stripe's) and press Pay."""
    await expect(page).to_have_url(CHECKOUT_PAGE, timeout=WAIT)
    email = page.get_by_label("Email")
    if await email.get_attribute("readonly") is None:
        await email.fill(fresh_email())
    await page.get_by_label("Card", exact=True).check()
    await page.get_by_label("Card number").fill(card)
    await page.get_by_label("Expiration").fill("12 / 34")
    await page.get_by_label("CVC").fill("123")
    await page.get_by_label("ZIP").fill("10001")
    await page.get_by_role("button", name="Pay").click()


CONFIGURATOR_H100 = "/gpus/nvidia-h100?" + "&".join(
    f"{key}={value}" for key, value in H100.items() if key != "gpu"
)


async def add_h100s_to_cart(page: Page, base_url: str) -> int:
    """The issue's H100 configuration in the cart (from the configurator's address); its price."""
    await page.goto(CONFIGURATOR_H100)
    total = await quote_total(base_url, H100)
    assert await shown_total(page) == total
    await page.get_by_role("button", name="Add to cart").click()
    await expect(page).to_have_url(re.compile(r"/cart$"))
    await expect(page.locator("[data-cart-line]")).to_have_count(1)
    return total


async def buy_h100s_and_leave_more_in_the_cart(
    page: Page, live: Platform, email: str
) -> tuple[int, str]:
    """The customer signs up, pays an order of H100s on Stripe's page, then puts the same
    configuration in the cart again and leaves it there; the order's total and the address of
    the checkout's success page."""
    await sign_up(page, email, live.settings)
    total = await add_h100s_to_cart(page, live.base_url)
    await page.get_by_role("button", name="Checkout").click()
    await pay_on_emulator(page, PAID_CARD)
    await expect(page.locator("#order-status")).to_have_attribute(
        "data-order-status", "paid", timeout=WAIT
    )
    success = page.url
    await add_h100s_to_cart(page, live.base_url)
    await expect(page.locator("[data-price-changed]")).to_have_count(0)
    return total, success


async def terminate_in_page(page: Page, row: Locator) -> None:
    """Press a dashboard row's Terminate, then confirm in the panel that names its machine."""
    name = await row.locator("h3").inner_text()
    await row.get_by_role("button", name=f"Terminate {name}").click()
    panel = page.locator("#terminate-panel")
    await expect(panel).to_contain_text("its disk is erased")
    await panel.get_by_role("button", name=f"Terminate {name}").click()
    await expect(panel).to_be_empty(timeout=WAIT)


@dataclass(frozen=True, slots=True)
class Operator:
    """An admin with two-factor authentication on, signed up through the API."""

    email: str
    access_token: str  # the API session the account was made with
    totp: pyotp.TOTP
    enabling_code: str  # the code that turned 2FA on (or a later one): spent


async def an_operator(http: httpx.AsyncClient, settings: Settings) -> Operator:
    """Signs up through the API, verifies the address and becomes an admin with 2FA on."""
    email = fresh_email()
    signed_up = await http.post(
        "/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "name": "Console Admin"}
    )
    assert signed_up.status_code == 201, signed_up.text
    access_token = signed_up.json()["access_token"]
    token = await emailed_token(settings, email, VERIFY_EMAIL)
    verified = await http.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 204, verified.text
    two_factor = await make_admin(settings, email, http=http, access_token=access_token)
    totp = pyotp.TOTP(two_factor.secret)
    return Operator(email, access_token, totp, enabling_code=totp.now())


async def log_in_with_a_code(
    page: Page, operator: Operator, *, on_code_page: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Password, then the authentication code (`on_code_page` runs while its page shows)."""
    await page.goto("/login?next=/admin")
    await page.get_by_label("E-mail").fill(operator.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    code = page.get_by_label("Authentication code")
    await expect(code).to_be_visible()
    if on_code_page is not None:
        await on_code_page()
    await code.fill(next_code(operator.totp, operator.enabling_code))
    await page.get_by_role("button", name="Verify", exact=True).click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()


def next_code(totp: pyotp.TOTP, used: str | None) -> str:
    """A code the server has not seen: a code works once, so wait for the next time step when
    the current one was just spent."""
    code = totp.now()
    while code == used:
        code = totp.at(datetime.now(UTC) + timedelta(seconds=1))
    return code


async def reload_until(page: Page, selector: str, *, timeout_ms: int = WAIT) -> None:
    """The page reloaded until `selector` shows (what a job or a webhook does meanwhile)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while await page.locator(selector).count() == 0:
        assert time.monotonic() < deadline, f"{selector} never showed on {page.url}"
        await asyncio.sleep(1)
        await page.reload()
