"""Webhook signing (Stripe's `t=…,v1=…` scheme) and at-least-once delivery from the SQLite queue:
retries with exponential backoff, each attempt signed afresh, optionally duplicated, shuffled or
delayed (the duplication and delay are decided when the event is queued, see `Emulator.emit`)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time

import httpx

from stripe_emulator.emulator import Emulator
from stripe_emulator.store import Delivery

logger = logging.getLogger(__name__)

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
# A delivery held for its request (webhook timing) longer than this is queued like any other.
HELD_GRACE_SECONDS = 60.0


def compute_signature(payload: str, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of `"{timestamp}.{payload}"` keyed with the whole `whsec_…` secret."""
    signed = f"{timestamp}.{payload}".encode()
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(payload: str, secret: str, timestamp: int) -> str:
    return f"t={timestamp},v1={compute_signature(payload, secret, timestamp)}"


def retry_delay(base_seconds: float, attempts_made: int) -> float:
    """Seconds before the next attempt after `attempts_made` failed ones: base, 2 base, 4 base..."""
    return float(base_seconds * 2 ** (attempts_made - 1))


def delivery_order(due: list[Delivery], shuffle: bool) -> list[Delivery]:
    """With `shuffle`, a random order that is never the original one when that is possible, so a
    receiver that depends on order is caught every time, not one run in n!."""
    if not shuffle or len(due) < 2:
        return due
    order = random.sample(due, len(due))
    return order if order != due else list(reversed(due))


class WebhookDeliverer:
    def __init__(self, emulator: Emulator, http: httpx.AsyncClient) -> None:
        self.emulator = emulator
        self.http = http

    async def run(self) -> None:
        """Deliver due events forever; pending deliveries stay in SQLite across restarts."""
        while True:
            try:
                await self.deliver_due()
            except Exception:
                logger.exception("webhook delivery round failed")
            await asyncio.sleep(self.emulator.config.tick_seconds)

    async def deliver_due(self) -> None:
        self.emulator.store.release_held_before(time.time() - HELD_GRACE_SECONDS)
        due = self.emulator.store.due_deliveries(time.time())
        for delivery in delivery_order(due, self.emulator.config.shuffle):
            await self.attempt(delivery)

    async def deliver_held(self, event_ids: list[str]) -> None:
        """Attempt a request's held deliveries now, in event order (or shuffled); a failed one
        is retried by the loop like any other."""
        held = self.emulator.store.held_deliveries(event_ids) if event_ids else []
        for delivery in delivery_order(held, self.emulator.config.shuffle):
            await self.attempt(delivery)

    async def attempt(self, delivery: Delivery) -> None:
        config = self.emulator.config
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": signature_header(
                delivery.payload, self.emulator.webhook_secret, timestamp
            ),
        }
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self.http.post(
                delivery.url,
                content=delivery.payload.encode(),
                headers=headers,
                timeout=config.webhook_timeout_seconds,
            )
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        attempts_made = delivery.attempts + 1
        if status_code is not None and 200 <= status_code < 300:
            new_status, next_attempt_at = "succeeded", time.time()
        elif attempts_made >= config.max_attempts:
            new_status, next_attempt_at = "failed", time.time()
        else:
            new_status = "pending"
            next_attempt_at = time.time() + retry_delay(config.retry_base_seconds, attempts_made)
        logger.info(
            "delivered %s to %s: %s",
            delivery.event_id,
            delivery.url,
            status_code if status_code is not None else error,
        )
        self.emulator.store.record_attempt(
            delivery,
            attempted_at=time.time(),
            status_code=status_code,
            error=error,
            new_status=new_status,
            next_attempt_at=next_attempt_at,
        )
