"""What the phases send. Each is a `MakeRequest`: called with a worker's client and its index, it
does one request's worth of work and raises when that did not succeed (see bench/load.py)."""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
import re
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from bench.database import Watcher, verification_token
from bench.load import RequestFailed
from computebill.devserver.scratch import Sessions
from computebill.jobs import JobName, JobPublisher, JobRequest

# --- plain calls ----------------------------------------------------------------------------


class Call:
    """One HTTP request, which succeeds on a 2xx answer."""

    def __init__(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._method, self._path, self._json, self._headers = method, path, json, headers

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        response = await client.request(
            self._method, self._path, json=self._json, headers=self._headers
        )
        response.raise_for_status()


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


# --- accounts (issue 4) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    email: str
    password: str
    access_token: str  # from the sign-up


async def sign_up(base_url: str, outbox: Sessions | None = None) -> Account:
    """A new account; given the run's database, its address is verified through the e-mailed
    link, as a customer's is before buying."""
    email = f"bench-{secrets.token_hex(6)}@example.com"
    password = secrets.token_urlsafe(18)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        body = {"email": email, "password": password, "name": "Benchmark"}
        response = await client.post("/api/v1/auth/signup", json=body)
        response.raise_for_status()
        if outbox is not None:
            token = await verification_token(outbox, email)
            verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
            verified.raise_for_status()
    return Account(email, password, str(response.json()["access_token"]))


class LogIn:
    """POST /auth/login for one account; keeps the refresh tokens it is given when asked to."""

    def __init__(self, account: Account, *, keep_tokens: bool = False) -> None:
        self._body = {"email": account.email, "password": account.password}
        self._keep = keep_tokens
        self.refresh_tokens: list[str] = []

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        response = await client.post("/api/v1/auth/login", json=self._body)
        response.raise_for_status()
        if self._keep:
            self.refresh_tokens.append(str(response.json()["refresh_token"]))


class RefreshChains:
    """Worker i refreshes session i, each time with the refresh token the last call returned."""

    def __init__(self, refresh_tokens: Sequence[str]) -> None:
        self._tokens = list(refresh_tokens)

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": self._tokens[worker]}
        )
        response.raise_for_status()
        self._tokens[worker] = str(response.json()["refresh_token"])


# --- the Stripe webhook (issue 6) -----------------------------------------------------------


class SignedEvents:
    """POST /webhooks/stripe: a Stripe-shaped event of a type the platform stores and ignores,
    each with a new id (`evt_bench_<n>`), signed like Stripe's (`t=…,v1=HMAC-SHA256(secret,
    "t.body")`). Counts the 200s, warm-up included, to compare with the rows stored."""

    ID_PREFIX = "evt_bench_"
    EVENT_TYPE = "customer.created"

    def __init__(self, webhook_secret: str, id_prefix: str = ID_PREFIX) -> None:
        self._secret = webhook_secret.encode()
        self.id_prefix = id_prefix
        self._numbers = itertools.count()
        self.answered = 0

    def next_signed(self) -> tuple[bytes, str]:
        """The next event's body and its `Stripe-Signature` header, signed now."""
        return self._signed(next(self._numbers))

    def _signed(self, number: int) -> tuple[bytes, str]:
        now = int(time.time())
        event = {
            "id": f"{self.id_prefix}{number}",
            "object": "event",
            "api_version": "2023-08-16",
            "created": now,
            "type": self.EVENT_TYPE,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": {"id": f"cus_bench_{number}", "object": "customer"}},
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        v1 = hmac.new(self._secret, f"{now}.".encode() + body, hashlib.sha256).hexdigest()
        return body, f"t={now},v1={v1}"

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        body, signature = self.next_signed()
        response = await client.post(
            "/webhooks/stripe",
            content=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        )
        response.raise_for_status()
        if response.status_code != httpx.codes.OK:
            raise RequestFailed(f"answered {response.status_code}, not 200")
        self.answered += 1


# --- the cart and checkout -------------------------------------------------------------------


async def add_to_cart(
    client: httpx.AsyncClient, auth: dict[str, str], item: dict[str, Any]
) -> None:
    """POST /api/v1/cart/items: one configuration into the caller's cart."""
    (await client.post("/api/v1/cart/items", json=item, headers=auth)).raise_for_status()


async def open_checkout(client: httpx.AsyncClient, auth: dict[str, str]) -> tuple[uuid.UUID, str]:
    """POST /api/v1/checkout with an Idempotency-Key of its own, so every call makes a new order
    (and a new Checkout Session) from the cart; the order's id and where to pay."""
    answer = await client.post(
        "/api/v1/checkout", headers=auth | {"Idempotency-Key": f"bench-{uuid.uuid4()}"}
    )
    answer.raise_for_status()
    if answer.status_code != httpx.codes.CREATED:
        raise RequestFailed(f"checkout answered {answer.status_code}, not 201")
    body = answer.json()
    return uuid.UUID(body["order_id"]), str(body["checkout_url"])


class CartAdds:
    """Worker i adds a configuration to shopper i's cart, cycling through `variants` of `item`
    (its `hours` 1, 2, …): the first `variants` adds of a worker each insert a line, the later
    ones raise a line's quantity by one. So a cart holds at most `variants` lines and takes
    `variants` x the per-line quantity limit adds before it is full."""

    def __init__(self, access_tokens: Sequence[str], item: dict[str, Any], variants: int) -> None:
        self._auth = [bearer(token) for token in access_tokens]
        self._items = [item | {"hours": hours} for hours in range(1, variants + 1)]
        self._added = [0] * len(access_tokens)

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        item = self._items[self._added[worker] % len(self._items)]
        self._added[worker] += 1
        await add_to_cart(client, self._auth[worker], item)


class Checkouts:
    """Worker i checks out shopper i's cart (left as it is, so each call makes a new order of the
    same lines): the order, its Checkout Session on the Stripe emulator, the answer."""

    def __init__(self, access_tokens: Sequence[str]) -> None:
        self._auth = [bearer(token) for token in access_tokens]

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        await open_checkout(client, self._auth[worker])


# --- a purchase through the emulator's hosted page (issue 6) ---------------------------------

# What tests/support/stripe.py's pay_by_card submits: Stripe's test card that pays.
CARD_FORM = {
    "email": "buyer@example.com",
    "paymentMethod": "card",
    "cardNumber": "4242424242424242",
    "cardExpiry": "12 / 34",
    "cardCvc": "123",
    "billingPostalCode": "10001",
}
_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


class Purchases:
    """Shopper i (already signed up) puts one configuration in the cart, checks out, pays on the
    emulator's hosted page like a browser without JavaScript, and waits until the order is
    `paid` (the webhook → job → fulfilment path; the success page is never visited)."""

    def __init__(
        self,
        access_tokens: Sequence[str],
        item: dict[str, Any],
        browser: httpx.AsyncClient,
        paid: Watcher,
        wait_seconds: float,
    ) -> None:
        self._auth = [bearer(token) for token in access_tokens]
        self._item = item
        self._browser = browser
        self._paid = paid
        self._wait_seconds = wait_seconds
        self.paid_seen_at: dict[str, datetime] = {}  # order → when `paid` was seen (Watcher)
        self.pay_to_paid: list[float] = []  # seconds from the form submitted to `paid` seen

    def clear(self) -> None:
        self.paid_seen_at.clear()
        self.pay_to_paid.clear()

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        auth = self._auth[worker]
        await add_to_cart(client, auth, self._item)
        order_id, checkout_url = await open_checkout(client, auth)
        page = await self._browser.get(checkout_url)
        page.raise_for_status()
        action = _FORM_ACTION.search(page.text)
        if action is None:
            raise RequestFailed("the hosted checkout page has no form")
        target = httpx.URL(checkout_url).join(html.unescape(action.group(1)))
        submitted = await self._browser.post(target, data=CARD_FORM)
        if submitted.status_code != httpx.codes.SEE_OTHER:
            raise RequestFailed(f"paying answered {submitted.status_code}, not 303")
        started = time.perf_counter()
        self.paid_seen_at[str(order_id)] = await self._paid.wait(order_id, self._wait_seconds)
        self.pay_to_paid.append(time.perf_counter() - started)


# --- provisioning (issue 7) -----------------------------------------------------------------


class Provisioning:
    """Each request takes the next paid order, asks for its `provision_order` job (as
    fulfilment does), and waits until every instance of the order is `running`."""

    def __init__(
        self,
        order_ids: Sequence[uuid.UUID],
        publisher: JobPublisher,
        running: Watcher,
        wait_seconds: float,
    ) -> None:
        self._orders = iter(order_ids)
        self._publisher = publisher
        self._running = running
        self._wait_seconds = wait_seconds

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        order_id = next(self._orders, None)
        if order_id is None:
            raise RequestFailed("no paid order left to provision")
        await self._publisher.publish([JobRequest(JobName.PROVISION_ORDER, (str(order_id),))])
        await self._running.wait(order_id, self._wait_seconds)
