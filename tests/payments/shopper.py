"""A customer driving the platform over HTTP, and paying on the emulator's hosted page."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.stripe_emulator.support import pay_by_bank_account, pay_by_card

H100 = {"gpu": "nvidia-h100", "gpu_count": 2, "vcpus": 24, "storage_gb": 500, "hours": 10}
H100_UNIT_TOTAL = 6680  # (2 × 249 + 24 × 5 + 500 × 0.1) ¢ × 10 h
PAID_CARD = "4242424242424242"


@dataclass
class Shopper:
    http: httpx.AsyncClient
    email: str = field(default_factory=lambda: f"buyer-{secrets.token_hex(5)}@example.com")
    token: str = ""

    async def sign_up(self) -> Shopper:
        answer = await self.http.post(
            "/api/v1/auth/signup", json={"email": self.email, "password": "correct horse battery"}
        )
        assert answer.status_code == 201, answer.text
        self.token = answer.json()["access_token"]
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
        deadline = time.monotonic() + within
        order = await self.order(order_id)
        while order["status"] != status and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            order = await self.order(order_id)
        assert order["status"] == status, order
        return order

    async def cart(self) -> dict[str, Any]:
        return dict((await self.http.get("/api/v1/cart", headers=self.auth)).json())


async def pay(checkout_url: str, card: str = PAID_CARD) -> httpx.Response:
    return await asyncio.to_thread(pay_by_card, checkout_url, card)


async def pay_by_bank(checkout_url: str, account: str) -> httpx.Response:
    return await asyncio.to_thread(pay_by_bank_account, checkout_url, account)
