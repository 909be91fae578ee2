"""A crowd of customers for the fault tests: each signs up, fills a cart, checks out and then
pays, is declined, goes back, lets the session expire or pays by bank, over HTTP as a browser
would. Faults are injected at fractions of the customers done, so they land in the middle of
the storm whatever its size."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import stripe

from computebill.config import Settings
from tests.support.http import AppClient
from tests.support.shopper import A100, DECLINED_CARD, H100, Shopper, cancel_link, pay, pay_by_bank
from tests.support.stripe import STRIPE_KEY

SETTLING_BANK_ACCOUNT = "000123456789"
TRANSIENT = frozenset({502, 503, 504})


class Plan(StrEnum):
    PAY = "pay"  # card 4242…
    PAY_SEVERAL = "pay_several"  # two lines, one of them quantity 2
    DECLINED_THEN_PAY = "declined_then_pay"
    DECLINED = "declined"  # gives up: the order stays pending, its session open
    BACK_THEN_EXPIRED = "back_then_expired"  # goes back to the cart; Stripe expires the session
    EXPIRED = "expired"
    BANK = "bank"  # US bank account: completed unpaid, settled a second later


PAYS = frozenset({Plan.PAY, Plan.PAY_SEVERAL, Plan.DECLINED_THEN_PAY, Plan.BANK})
FINAL_STATUS = {
    Plan.PAY: "paid",
    Plan.PAY_SEVERAL: "paid",
    Plan.DECLINED_THEN_PAY: "paid",
    Plan.BANK: "paid",
    Plan.DECLINED: "pending",
    Plan.BACK_THEN_EXPIRED: "expired",
    Plan.EXPIRED: "expired",
}
_CYCLE = [
    Plan.PAY,
    Plan.PAY,
    Plan.PAY,
    Plan.PAY_SEVERAL,
    Plan.PAY,
    Plan.DECLINED_THEN_PAY,
    Plan.DECLINED,
    Plan.BACK_THEN_EXPIRED,
    Plan.EXPIRED,
    Plan.BANK,
]


def plan_for(index: int) -> Plan:
    return _CYCLE[index % len(_CYCLE)]


@dataclass
class Customer:
    shopper: Shopper
    plan: Plan
    order_id: str = ""
    session_id: str = ""


class _RetryingTransport(httpx.AsyncBaseTransport):
    """A client that tries again, like a browser's user, when an app answers 502/503/504 or
    drops the connection (a request is never half-applied: the app commits before it answers).
    Used only for the customers' own calls, never for webhooks."""

    def __init__(self, attempts: int = 5) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._attempts = attempts

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.TransportError:
                if attempt == self._attempts:
                    raise
            else:
                if response.status_code not in TRANSIENT or attempt == self._attempts:
                    return response
                await response.aclose()
            await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self._inner.aclose()


def customer_client(base_url: str, settings: Settings) -> AppClient:
    return AppClient(settings, base_url=base_url, timeout=60, transport=_RetryingTransport())


def _expire(emulator_url: str, session_id: str) -> None:
    """What Stripe does when a session's time is up (here: now)."""
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": emulator_url})
    client.v1.checkout.sessions.expire(session_id)


async def _buy(customer: Customer, emulator_url: str) -> None:
    shopper, plan = customer.shopper, customer.plan
    await shopper.sign_up()
    if plan is Plan.PAY_SEVERAL:
        await shopper.add(H100, quantity=2)
        await shopper.add(A100)
    else:
        await shopper.add()
    customer.order_id, checkout_url = await shopper.checkout_url()
    customer.session_id = checkout_url.rsplit("/", 1)[-1]
    answer: httpx.Response | None = None
    if plan in (Plan.DECLINED, Plan.DECLINED_THEN_PAY):
        declined = await pay(checkout_url, DECLINED_CARD)
        assert declined.status_code == 402, declined.text
    if plan in (Plan.PAY, Plan.PAY_SEVERAL, Plan.DECLINED_THEN_PAY):
        answer = await pay(checkout_url)
    elif plan is Plan.BANK:
        answer = await pay_by_bank(checkout_url, SETTLING_BANK_ACCOUNT)
    elif plan is Plan.BACK_THEN_EXPIRED:
        assert "/checkout/canceled" in await cancel_link(checkout_url)
        await asyncio.to_thread(_expire, emulator_url, customer.session_id)
    elif plan is Plan.EXPIRED:
        await asyncio.to_thread(_expire, emulator_url, customer.session_id)
    if answer is not None:
        assert answer.status_code == 303, answer.text


@dataclass
class Crowd:
    """`size` customers, `parallel` at a time, spread over the apps at `app_urls`."""

    app_urls: list[str]
    emulator_url: str
    settings: Settings  # the apps': their database holds the e-mails customers verify with
    size: int
    parallel: int = 12
    customers: list[Customer] = field(default_factory=list)
    done: int = 0
    seconds: float = 0.0  # from the first sign-up to the last purchase
    faults_at: list[int] = field(default_factory=list)  # customers done when each fault began

    async def run(
        self, faults: list[tuple[float, Callable[[], Coroutine[Any, Any, None]]]]
    ) -> None:
        """Every purchase, while the `faults` run one after the other, each once `fraction`
        of the customers are done (and the previous fault is over)."""
        clients = [customer_client(url, self.settings) for url in self.app_urls]
        progress = asyncio.Condition()
        started = time.monotonic()

        async def inject() -> None:
            for fraction, fault in faults:
                async with progress:
                    await progress.wait_for(self._reached(fraction))
                self.faults_at.append(self.done)
                await fault()

        async def one(customer: Customer, gate: asyncio.Semaphore) -> None:
            async with gate:
                await _buy(customer, self.emulator_url)
            async with progress:
                self.done += 1
                progress.notify_all()

        try:
            self.customers = [
                Customer(Shopper(clients[i % len(clients)]), plan_for(i)) for i in range(self.size)
            ]
            injector = asyncio.create_task(inject())
            gate = asyncio.Semaphore(self.parallel)
            results = await asyncio.gather(
                *(one(c, gate) for c in self.customers), return_exceptions=True
            )
            self.seconds = time.monotonic() - started
            await injector  # a fault that was not over when the last customer was
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
        finally:
            for client in clients:
                await client.aclose()

    def _reached(self, fraction: float) -> Callable[[], bool]:
        return lambda: self.done >= fraction * self.size

    def by_order(self) -> dict[str, Customer]:
        return {c.order_id: c for c in self.customers}


def expect_outcomes(crowd: Crowd, statuses: dict[str, str]) -> list[str]:
    """What each customer did shows in their order (`statuses`: order id → status)."""
    problems = []
    for customer in crowd.customers:
        status = statuses.get(customer.order_id)
        if status != FINAL_STATUS[customer.plan]:
            problems.append(f"{customer.plan} order {customer.order_id}: {status}")
    return problems


def summary(crowd: Crowd) -> dict[str, Any]:
    plans: dict[str, int] = {}
    for customer in crowd.customers:
        plans[customer.plan.value] = plans.get(customer.plan.value, 0) + 1
    return {
        "customers": crowd.size,
        "seconds": round(crowd.seconds, 1),
        "faults_at": crowd.faults_at,
        "plans": plans,
    }
