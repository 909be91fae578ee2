"""The state every operation shares: the store, the options, the clock, and event emission."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

from stripe_emulator import objects
from stripe_emulator.config import API_VERSION, EmulatorConfig
from stripe_emulator.errors import no_such
from stripe_emulator.store import JSON, Store, StoredObject, new_id

WEBHOOK_SECRET_SETTING = "webhook_secret"  # noqa: S105 -- a settings key, not a secret


@dataclass
class Cause:
    """What caused a change: an API request (its id and idempotency key) or the emulator itself
    (hosted page, timers, triggers: no request id, as in Stripe). Collects the events emitted."""

    request_id: str | None = None
    idempotency_key: str | None = None
    # Held deliveries wait for the request to send them (before or after its response).
    hold: bool = False
    emitted: list[str] = field(default_factory=list)


class Emulator:
    def __init__(self, config: EmulatorConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.webhook_secret = config.webhook_secret or self._generated_webhook_secret()
        # `--webhook-timing`, changeable while running (POST /_emulator/webhook-timing).
        self.webhook_timing = config.webhook_timing

    def _generated_webhook_secret(self) -> str:
        """One secret generated on first start and kept, so a receiver's config stays valid."""
        with self.store.transaction():
            secret = self.store.setting(WEBHOOK_SECRET_SETTING)
            if secret is None:
                secret = new_id("whsec_", 32)
                self.store.save_setting(WEBHOOK_SECRET_SETTING, secret)
        return secret

    def public_base_url(self, request_base_url: str) -> str:
        """The address that links to the emulator's pages start with."""
        return (self.config.public_url or request_base_url).rstrip("/")

    @staticmethod
    def now() -> int:
        return int(time.time())

    @staticmethod
    def today() -> dt.date:
        return dt.datetime.now(dt.UTC).date()

    def load(self, object_type: str, object_id: str, *, param: str) -> StoredObject:
        found = self.store.find(object_id, object_type)
        if found is None:
            raise no_such(object_type.replace("_", " ").replace(".", " "), object_id, param)
        return found

    def emit(
        self,
        event_type: str,
        data_object: JSON,
        cause: Cause,
        previous_attributes: dict[str, Any] | None = None,
    ) -> JSON:
        """Record an event and queue its deliveries, in the caller's transaction."""
        copies = 2 if self.config.duplicate else 1
        urls = [url for url in self.config.forward_to for _ in range(copies)]
        event = objects.event(
            event_id=new_id("evt_"),
            created=self.now(),
            event_type=event_type,
            data_object=data_object,
            api_version=API_VERSION,
            pending_webhooks=len(urls),
            request_id=cause.request_id,
            idempotency_key=cause.idempotency_key,
            previous_attributes=previous_attributes,
        )
        with self.store.transaction():
            self.store.insert(event)
            payload = json.dumps(event, indent=2)
            due = time.time() + self.config.delay_seconds
            for url in urls:
                self.store.add_delivery(
                    event["id"], url, payload, due, "held" if cause.hold else "pending"
                )
        cause.emitted.append(event["id"])
        return event
