"""A customer driving the platform over HTTP, and paying on the emulator's hosted page."""

from __future__ import annotations

import asyncio
import html
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from computebill.config import Settings
from tests.support.http import AppClient, in_process
from tests.support.mailbox import verify_address
from tests.support.stripe import pay_by_bank_account, pay_by_card

H100 = {"gpu": "nvidia-h100", "gpu_count": 2, "vcpus": 24, "storage_gb": 500, "hours": 10}
H100_UNIT_TOTAL = 6680  # (2 × 249 + 24 × 5 + 500 × 0.1) ¢ × 10 h
A100 = {"gpu": "nvidia-a100", "gpu_count": 1, "vcpus": 12, "storage_gb": 500, "hours": 5}
PAID_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
THREE_D_SECURE_CARD = "4000002760003184"  # a second page asks the customer to authenticate


@dataclass
class Shopper:
    """A customer. Signing up follows the e-mailed verification link, so the shopper can buy;
    that needs an `AppClient`, which knows where the app's outbox is."""

    http: httpx.AsyncClient
    email: str = field(default_factory=lambda: f"buyer-{secrets.token_hex(5)}@example.com")
    token: str = ""

    async def sign_up(self) -> Shopper:
        answer = await self.http.post(
            "/api/v1/auth/signup", json={"email": self.email, "password": "correct horse battery"}
        )
        assert answer.status_code == 201, answer.text
        self.token = answer.json()["access_token"]
        assert isinstance(self.http, AppClient), "sign up through an AppClient"
        await verify_address(self.http, self.http.settings, self.email)
        return self

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    async def add(self, item: dict[str, Any] | None = None, **changes: Any) -> None:
        answer = await self.http.post(
            "/api/v1/cart/items", json=(item or H100) | changes, headers=self.auth
        )
        assert answer.status_code == 201, answer.text

    async def checkout(self, key: str | None = None, **extra: Any) -> httpx.Response:
        headers = self.auth | ({"Idempotency-Key": key} if key else {})
        return await self.http.post("/api/v1/checkout", headers=headers, json=extra or None)

    async def checkout_url(self) -> tuple[str, str]:
        answer = await self.checkout()
        assert answer.status_code == 201, answer.text
        body = answer.json()
        return body["order_id"], body["checkout_url"]

    async def order(self, order_id: str) -> dict[str, Any]:
        answer = await self.http.get(f"/api/v1/orders/{order_id}", headers=self.auth)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def wait_for(self, order_id: str, status: str, within: float = 30) -> dict[str, Any]:
        order = await self.wait_until(order_id, lambda o: o["status"] == status, within)
        assert order["status"] == status, order
        return order

    async def wait_until(
        self, order_id: str, done: Callable[[dict[str, Any]], bool], within: float = 30
    ) -> dict[str, Any]:
        """The order once `done(order)` holds, or as it is when `within` seconds have passed."""
        deadline = time.monotonic() + within
        order = await self.order(order_id)
        while not done(order) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            order = await self.order(order_id)
        return order

    async def cart(self) -> dict[str, Any]:
        return dict((await self.http.get("/api/v1/cart", headers=self.auth)).json())

    async def orders(self, **params: str | int) -> httpx.Response:
        return await self.http.get("/api/v1/orders", params=params, headers=self.auth)

    async def session_id(self, order_id: str) -> str:
        """The order's Stripe Checkout Session."""
        session_id = (await self.order(order_id))["checkout_session_id"]
        assert isinstance(session_id, str), session_id
        return session_id

    async def refund(
        self, order_id: str, amount_cents: int | None = None, key: str | None = None
    ) -> httpx.Response:
        """Ask for a refund as an admin would (only an admin is answered 202)."""
        headers = self.auth | ({"Idempotency-Key": key} if key else {})
        body = {} if amount_cents is None else {"amount_cents": amount_cents}
        return await self.http.post(
            f"/api/v1/admin/orders/{order_id}/refund", json=body, headers=headers
        )

    async def buy(self, **changes: Any) -> tuple[str, str]:
        """A paid order for one cart item: (order id, its checkout session id)."""
        await self.add(**changes)
        order_id, checkout_url = await self.checkout_url()
        answer = await pay(checkout_url)
        assert answer.status_code == 303, answer.text
        order = await self.wait_for(order_id, "paid")
        return order_id, str(order["checkout_session_id"])


async def pay(checkout_url: str, card: str = PAID_CARD) -> httpx.Response:
    return await asyncio.to_thread(pay_by_card, checkout_url, card)


async def pay_by_bank(checkout_url: str, account: str) -> httpx.Response:
    return await asyncio.to_thread(pay_by_bank_account, checkout_url, account)


async def authenticate(checkout_url: str, *, complete: bool) -> httpx.Response:
    """Answer the emulator's 3-D Secure page: Complete authentication, or Fail authentication."""
    async with httpx.AsyncClient() as browser:
        return await browser.post(
            f"{checkout_url}/authenticate", data={"outcome": "complete" if complete else "fail"}
        )


async def cancel_link(checkout_url: str) -> str:
    """Where the hosted page's Back link leads (the session's cancel_url)."""
    async with httpx.AsyncClient() as browser:
        page = await browser.get(checkout_url)
    match = re.search(r'<a href="([^"]+)">Back</a>', page.text)
    assert match, page.text
    return html.unescape(match.group(1))


async def paid_checkout(settings: Settings, *, quantity: int = 1) -> uuid.UUID:
    """An order of `quantity` H100s that a new shopper checked out, on an app served in this
    process, and paid on the emulator's page; its events are left to the test."""
    async with in_process(settings) as http:
        shopper = await Shopper(http).sign_up()
        await shopper.add(quantity=quantity)
        order_ref, checkout_url = await shopper.checkout_url()
    assert (await pay(checkout_url)).status_code == 303
    return uuid.UUID(order_ref)
