"""Helpers for the emulator's tests: a webhook receiver, validation against Stripe's published
schemas, and Checkout Sessions to pay. The emulator as a process and paying on its hosted page
are in tests/support/stripe.py, shared with the platform's tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import stripe
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tests.stripe_emulator.write_facts import SCHEMAS_FILE, SPEC_ONLY_FIELDS_FILE

JSON = dict[str, Any]
WEBHOOK_SECRET = "whsec_emulator_tests_main"
MAIN_PATH = "/main"  # where the shared emulator delivers, on the shared receiver


# Schema validation, against the Stripe facts in `facts/` (see its README) -------------------


@cache
def _schemas() -> JSON:
    schemas: JSON = json.loads(SCHEMAS_FILE.read_text())
    return schemas


@cache
def _validator(schema_json: str) -> Draft202012Validator:
    root = {"components": _schemas()["components"], **json.loads(schema_json)}
    return Draft202012Validator(root)


@cache
def _spec_only_fields() -> JSON:
    fields: JSON = json.loads(SPEC_ONLY_FIELDS_FILE.read_text())
    return fields


def assert_valid(obj: JSON, schema_name: str | None = None) -> None:
    """`obj` validates against the 2023-08-16 schemas and carries the fields that spec still
    lists but SDK 16 dropped (sent as null). `schema_name` defaults to `obj["object"]`."""
    name = schema_name or obj["object"]
    reference = json.dumps({"$ref": f"#/components/schemas/{name}"})
    errors = sorted(_validator(reference).iter_errors(obj), key=lambda error: error.path)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    for field in _spec_only_fields().get(name, []):
        assert field in obj, f"{name} lacks {field} (the 2023 spec lists it)"


def assert_valid_response(obj: JSON, path: str, method: str = "get") -> None:
    """Validate a whole response (lists included) against the schema of an OpenAPI path."""
    schema = _schemas()["responses"][path][method]
    errors = list(_validator(json.dumps(schema)).iter_errors(obj))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    items = obj["data"] if obj.get("object") == "list" else [obj]
    for item in items:
        assert_valid(item)


def error_body(error: stripe.StripeError) -> JSON:
    body = error.json_body
    assert isinstance(body, dict)
    return body


def raw(stripe_object: stripe.StripeObject) -> JSON:
    """The JSON the emulator answered, as the SDK received it."""
    response = stripe_object.last_response
    assert response is not None
    data: JSON = json.loads(response.body)
    return data


# A webhook receiver ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedWebhook:
    path: str
    body: str
    signature: str
    answered: int

    @property
    def event(self) -> JSON:
        event: JSON = json.loads(self.body)
        return event

    def verified(self, secret: str) -> stripe.Event:
        """The event as the SDK builds it after checking the signature (default tolerance)."""
        event: stripe.Event = stripe.Webhook.construct_event(self.body, self.signature, secret)
        return event


class WebhookReceiver:
    """A small HTTP server recording every delivery; per path it can answer 500 to the first
    n attempts of each event, be "down" (503) until told otherwise, or run a probe on arrival
    (recording its result per event id, before answering)."""

    def __init__(self) -> None:
        self.received: list[ReceivedWebhook] = []
        self.failures_per_event: dict[str, int] = {}
        self.down_paths: set[str] = set()
        self.probes: dict[str, Callable[[], bool]] = {}
        self.probed: dict[str, bool] = {}  # event id -> its path's probe on arrival
        self._attempts: dict[tuple[str, str], int] = {}
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                probe = receiver.probes.get(self.path)
                if probe is not None:
                    receiver.probed[json.loads(body)["id"]] = probe()
                status = receiver._answer(self.path, body)
                # Recorded before answering: the sender knows of no delivery the list lacks.
                with receiver._changed:
                    receiver.received.append(
                        ReceivedWebhook(
                            self.path, body, self.headers.get("Stripe-Signature", ""), status
                        )
                    )
                    receiver._changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer(self, path: str, body: str) -> int:
        if path in self.down_paths:
            return 503
        event_id = json.loads(body)["id"]
        with self._changed:
            attempts = self._attempts[(path, event_id)] = (
                self._attempts.get((path, event_id), 0) + 1
            )
        return 500 if attempts <= self.failures_per_event.get(path, 0) else 200

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def wait_for(
        self,
        path: str,
        predicate: Callable[[ReceivedWebhook], bool],
        count: int = 1,
        timeout: float = 10,
    ) -> list[ReceivedWebhook]:
        """Wait until `count` deliveries to `path` match `predicate`; returns all matches."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [w for w in self.received if w.path == path and predicate(w)]
                if len(matches) >= count or time.monotonic() >= deadline:
                    return matches
                self._changed.wait(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def about(*object_ids: str) -> Callable[[ReceivedWebhook], bool]:
    """Deliveries whose event object is one of `object_ids` or points at one of them."""

    def matches(webhook: ReceivedWebhook) -> bool:
        data_object = webhook.event["data"]["object"]
        keys = ("id", "payment_intent", "charge", "customer", "setup_intent")
        related = {data_object.get(key) for key in keys}
        return not related.isdisjoint(object_ids)

    return matches


SDK_CLASSES: dict[str, type[stripe.StripeObject]] = {
    "payment_intent": stripe.PaymentIntent,
    "payment_method": stripe.PaymentMethod,
    "setup_intent": stripe.SetupIntent,
    "charge": stripe.Charge,
    "customer": stripe.Customer,
    "checkout.session": stripe.checkout.Session,
}


def delivered_events(
    receiver: WebhookReceiver, object_id: str, event_type: str, count: int = 1
) -> list[ReceivedWebhook]:
    """Deliveries of `event_type` about `object_id`, each checked: signed, the SDK's class for
    its object, and valid against Stripe's schema."""
    webhooks = receiver.wait_for(
        MAIN_PATH,
        lambda w: about(object_id)(w) and w.event["type"] == event_type,
        count=count,
    )
    assert len(webhooks) >= count, f"no {event_type} about {object_id}"
    for webhook in webhooks:
        event = webhook.verified(WEBHOOK_SECRET)
        data_object = webhook.event["data"]["object"]
        assert isinstance(event.data.object, SDK_CLASSES[data_object["object"]])
        assert_valid(data_object)
    return webhooks


def event_types(client: stripe.StripeClient, object_id: str) -> list[str]:
    """The types of the events about `object_id`, oldest first."""
    events = raw(client.v1.events.list(params={"limit": 100}))["data"]
    keys = ("id", "payment_intent", "customer", "setup_intent")
    return [
        event["type"]
        for event in reversed(events)
        if object_id in {event["data"]["object"].get(key) for key in keys}
    ]


# Checkout Sessions ---------------------------------------------------------------------------


def create_session(client: stripe.StripeClient, **params: Any) -> stripe.checkout.Session:
    """A payment session for one GPU line item (2 x USD 12.50) unless `params` say otherwise."""
    defaults: dict[str, Any] = {
        "mode": "payment",
        "success_url": "http://127.0.0.1:9/orders/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://127.0.0.1:9/cart",
        "line_items": [
            {
                "quantity": 2,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 1250,
                    "product_data": {
                        "name": "NVIDIA H100 x 1, 10 h",
                        "description": "1 GPU, 16 vCPU, 200 GB NVMe",
                        "metadata": {"gpu": "nvidia-h100"},
                    },
                },
            }
        ],
    }
    # Tests override parameters freely, invalid ones included.
    return client.v1.checkout.sessions.create(params=cast(Any, {**defaults, **params}))
