"""Stripe in the tests: the emulator as a real process, paying on its hosted checkout page like
a browser without JavaScript, settings that talk to it, webhook events signed like Stripe's, and
reading the events the platform stored."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import httpx
import stripe
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import select

from computebill.config import Settings
from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import Sessions
from computebill.invoices.service import Seller
from computebill.payments.models import EventStatus, StripeEvent
from computebill.payments.terms import PaymentTerms

WEBHOOK_SECRET = "whsec_platform_tests_primary"
OTHER_WEBHOOK_SECRET = "whsec_platform_tests_rotated"
STRIPE_KEY = "sk_test_platform_tests"  # what the platform's apps and workers use
API_KEY = "sk_test_emulator_tests"  # what `EmulatorProcess.client()` uses
DONE = frozenset({EventStatus.PROCESSED, EventStatus.IGNORED})


# The emulator as a real process --------------------------------------------------------------


class EmulatorProcess:
    """`python -m stripe_emulator serve …` on a free port of 127.0.0.1."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        self.data_dir = data_dir
        self.options = options
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "emulator.log"

    def start(self) -> EmulatorProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "stripe_emulator", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir), "--log-level", "warning", *self.options]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.base_url}/_emulator/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"the emulator did not start:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=15)

    def client(self) -> stripe.StripeClient:
        return stripe.StripeClient(API_KEY, base_addresses={"api": self.base_url})

    def trigger(
        self, event_type: str, session_id: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "stripe_emulator", "trigger", event_type]
        command += ["--api-base", self.base_url]
        if session_id:
            command += ["--for", session_id]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=30, env={**os.environ}, check=False
        )


def forwarding_emulator(data_dir: Path, app_urls: Sequence[str], *options: str) -> EmulatorProcess:
    """The emulator the platform tests run, started: it delivers every event to each app (as
    Stripe does to each endpoint), signed with WEBHOOK_SECRET, retries soon, and settles bank
    payments after a second."""
    forwards = [option for url in app_urls for option in ("--forward-to", f"{url}/webhooks/stripe")]
    return EmulatorProcess(
        data_dir,
        *forwards,
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--retry-base",
        "0.5",
        "--async-settle-delay",
        "1",
        *options,
    ).start()


def with_stripe(
    settings: Settings,
    *,
    api_base: str,
    webhook_secret: str | None = f"{WEBHOOK_SECRET},{OTHER_WEBHOOK_SECRET}",
    **changes: object,
) -> Settings:
    """`settings` talking to Stripe at `api_base` and accepting webhooks signed with
    `webhook_secret` (comma-separated during a rotation; None: no secret configured)."""
    return settings.model_copy(
        update={
            "stripe_secret_key": SecretStr(STRIPE_KEY),
            "stripe_api_base": AnyHttpUrl(api_base),
            "stripe_webhook_secret": SecretStr(webhook_secret) if webhook_secret else None,
            **changes,
        }
    )


# The hosted checkout page --------------------------------------------------------------------

CARD_FORM = {
    "email": "buyer@example.com",
    "cardExpiry": "12 / 34",
    "cardCvc": "123",
    "billingPostalCode": "10001",
}


def pay_by_card(session_url: str, card_number: str, **fields: str) -> httpx.Response:
    """GET the page, then submit its form like a browser without JavaScript (no redirects
    followed, so the caller sees the 303 to success_url or the re-rendered page)."""
    page = httpx.get(session_url)
    assert page.status_code == 200, page.text
    form = {**CARD_FORM, "paymentMethod": "card", "cardNumber": card_number, **fields}
    return httpx.post(_form_action(session_url, page.text), data=form)


def pay_by_bank_account(session_url: str, account_number: str) -> httpx.Response:
    page = httpx.get(session_url)
    form = {
        "email": "buyer@example.com",
        "paymentMethod": "us_bank_account",
        "routingNumber": "110000000",
        "accountNumber": account_number,
        "billingPostalCode": "10001",
    }
    return httpx.post(_form_action(session_url, page.text), data=form)


def _form_action(page_url: str, html: str) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', html)
    assert match, "the page has no form"
    return str(httpx.URL(page_url).join(match.group(1)))


# Webhooks signed like Stripe's ----------------------------------------------------------------


def stripe_event(event_type: str, data_object: dict[str, Any] | None = None) -> dict[str, Any]:
    """An event in Stripe's shape with a fresh id."""
    return {
        "id": f"evt_test_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": data_object or {"id": f"obj_{secrets.token_hex(8)}", "object": "x"}},
    }


def v1_signature(body: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(body: bytes, *secrets_: str, timestamp: int | None = None) -> str:
    """`t=…,v1=…` with one v1 per secret, like Stripe's header (two during a rotation)."""
    at = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={at}", *(f"v1={v1_signature(body, s, at)}" for s in secrets_)])


def body_of(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode()


async def post_event(
    http: httpx.AsyncClient, event: dict[str, Any], *secrets_: str, timestamp: int | None = None
) -> httpx.Response:
    """POST the event to `/webhooks/stripe`, signed with `secrets_` (none: no header)."""
    body = body_of(event)
    headers = {"content-type": "application/json; charset=utf-8"}
    if secrets_:
        headers["stripe-signature"] = signature_header(body, *secrets_, timestamp=timestamp)
    return await http.post("/webhooks/stripe", content=body, headers=headers)


# The events the platform stored ---------------------------------------------------------------


async def stored_events(db: Sessions, ids: Collection[str]) -> dict[str, StripeEvent]:
    async with db() as session:
        rows = await session.scalars(select(StripeEvent).where(StripeEvent.id.in_(list(ids))))
        return {row.id: row for row in rows}


async def all_events(db: Sessions) -> dict[str, StripeEvent]:
    async with db() as session:
        return {row.id: row for row in await session.scalars(select(StripeEvent))}


async def wait_until_handled(
    db: Sessions, ids: Collection[str], within: float = 15
) -> dict[str, StripeEvent]:
    """The events once every one is stored and processed or ignored (asserts it happens)."""
    deadline = time.monotonic() + within
    while True:
        events = await stored_events(db, ids)
        handled = len(events) == len(set(ids)) and all(e.status in DONE for e in events.values())
        if handled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert handled, {i: (e.status, e.last_error) for i, e in events.items()} | {
        "missing": sorted(set(ids) - set(events))
    }
    return events


def payment_terms(retry_delays: Sequence[int] = (60,)) -> PaymentTerms:
    """The terms the worker and the pages pass when they apply a payment, for tests that apply
    one directly: the default settings' seller and these auto-recharge retry waits."""
    return PaymentTerms(seller=Seller.of(Settings()), retry_delays=tuple(retry_delays))
