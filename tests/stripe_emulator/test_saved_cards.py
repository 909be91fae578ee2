"""Saving cards and charging them off-session through the official SDK: PaymentMethods from test
tokens, attach and detach, the customer's default, off-session PaymentIntents with each test
card (402 card errors included, replayed by idempotency key), SetupIntents, and the events."""

from __future__ import annotations

import json
import select
import socket
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import stripe

from tests.stripe_emulator.support import (
    WEBHOOK_SECRET,
    ReceivedWebhook,
    WebhookReceiver,
    about,
    assert_valid,
    delivered_events,
    error_body,
    event_types,
    raw,
)
from tests.support.stripe import API_KEY, EmulatorProcess

JSON = dict[str, Any]


def _customer(client: stripe.StripeClient) -> stripe.Customer:
    return client.v1.customers.create(params={"email": f"{uuid.uuid4().hex[:8]}@example.com"})


def _saved_card(client: stripe.StripeClient, customer_id: str, token: str) -> stripe.PaymentMethod:
    """The real API path: a test PaymentMethod attached to the customer (a new one each time)."""
    return client.v1.payment_methods.attach(token, params={"customer": customer_id})


def _charge(
    client: stripe.StripeClient,
    customer_id: str,
    payment_method_id: str,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> stripe.PaymentIntent:
    params: stripe.params.PaymentIntentCreateParams = {
        "amount": 2000,
        "currency": "usd",
        "customer": customer_id,
        "payment_method": payment_method_id,
        "confirm": True,
        "off_session": True,
        "description": "Auto-recharge",
        "metadata": {"account_id": "acct_7", "kind": "auto_recharge"},
    }
    options: stripe.RequestOptions = {}
    if key is not None:
        options["idempotency_key"] = key
    if headers is not None:
        options["headers"] = headers
    return client.v1.payment_intents.create(params=params, options=options)


def test_a_test_token_attaches_a_new_card_that_is_listed_retrieved_and_detached(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    customer = _customer(client)
    card = _saved_card(client, customer.id, "pm_card_visa")
    data = raw(card)
    assert_valid(data)
    assert card.id.startswith("pm_")
    assert card.id != "pm_card_visa"
    assert (card.type, card.customer) == ("card", customer.id)
    assert card.card is not None
    assert (card.card.brand, card.card.last4, card.card.funding, card.card.country) == (
        "visa",
        "4242",
        "credit",
        "US",
    )
    assert card.card.exp_month == 12
    assert card.card.exp_year > 2025
    assert card.card.checks is not None
    assert card.card.checks.cvc_check == "pass"
    other = _saved_card(client, customer.id, "pm_card_visa")
    mastercard = _saved_card(client, customer.id, "pm_card_mastercard")
    assert card.card.fingerprint == str(other.card and other.card.fingerprint)
    assert card.card.fingerprint != str(mastercard.card and mastercard.card.fingerprint)

    listed = client.v1.payment_methods.list(params={"customer": customer.id, "type": "card"})
    assert [pm.id for pm in listed.data] == [mastercard.id, other.id, card.id]
    for item in raw(listed)["data"]:
        assert_valid(item)
    by_customer = client.v1.customers.payment_methods.list(customer.id)
    assert [pm.id for pm in by_customer.data] == [mastercard.id, other.id, card.id]
    fetched = client.v1.payment_methods.retrieve(card.id, params={"expand": ["customer"]})
    assert isinstance(fetched.customer, stripe.Customer)
    own = client.v1.customers.payment_methods.retrieve(customer.id, card.id)
    assert_valid(raw(own))
    assert own.id == card.id
    stranger = _customer(client)
    with pytest.raises(stripe.InvalidRequestError) as not_theirs:
        client.v1.customers.payment_methods.retrieve(stranger.id, card.id)
    assert (not_theirs.value.http_status, not_theirs.value.code) == (404, "resource_missing")

    detached = client.v1.payment_methods.detach(card.id)
    assert detached.customer is None
    remaining = client.v1.customers.payment_methods.list(customer.id)
    assert [pm.id for pm in remaining.data] == [mastercard.id, other.id]

    [attached] = delivered_events(receiver, card.id, "payment_method.attached")
    assert attached.event["data"]["object"]["customer"] == customer.id
    [detached_event] = delivered_events(receiver, card.id, "payment_method.detached")
    assert detached_event.event["data"]["object"]["customer"] is None
    assert detached_event.event["data"]["previous_attributes"] == {"customer": customer.id}

    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.payment_methods.detach(card.id)
    assert again.value.http_status == 400


def test_a_card_number_makes_a_payment_method(client: stripe.StripeClient) -> None:
    created = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "5200828282828210", "exp_month": 4, "exp_year": 2031, "cvc": "1"},
            "billing_details": {"email": "card@example.com"},
        }
    )
    assert_valid(raw(created))
    assert created.customer is None
    assert created.card is not None
    assert (created.card.brand, created.card.last4, created.card.funding) == (
        "mastercard",
        "8210",
        "debit",
    )
    assert created.billing_details.email == "card@example.com"
    customer = _customer(client)
    attached = client.v1.payment_methods.attach(created.id, params={"customer": customer.id})
    assert (attached.id, attached.customer) == (created.id, customer.id)


def test_a_declining_card_cannot_be_attached_but_0341_can(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    with pytest.raises(stripe.CardError) as declined:
        _saved_card(client, customer.id, "pm_card_chargeDeclined")
    assert declined.value.http_status == 402
    assert (declined.value.code, error_body(declined.value)["error"]["decline_code"]) == (
        "card_declined",
        "generic_decline",
    )
    assert_valid(error_body(declined.value), "error")
    assert client.v1.customers.payment_methods.list(customer.id).data == []

    fails_later = _saved_card(client, customer.id, "pm_card_chargeCustomerFail")
    assert fails_later.card is not None
    assert fails_later.card.last4 == "0341"


def test_the_default_payment_method_must_be_the_customers_own(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    customer = _customer(client)
    stranger = _customer(client)
    theirs = _saved_card(client, stranger.id, "pm_card_visa")
    loose = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 1, "exp_year": 2040},
        }
    )
    for payment_method_id in (theirs.id, loose.id, "pm_doesnotexist"):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.customers.update(
                customer.id,
                params={"invoice_settings": {"default_payment_method": payment_method_id}},
            )
        assert refused.value.http_status == 400
        assert (refused.value.code, refused.value.param) == (
            "resource_missing",
            "invoice_settings[default_payment_method]",
        )
        assert_valid(error_body(refused.value), "error")

    mine = _saved_card(client, customer.id, "pm_card_visa")
    updated = client.v1.customers.update(
        customer.id,
        params={
            "invoice_settings": {"default_payment_method": mine.id},
            "metadata": {"account_id": "acct_1", "tier": "gold"},
        },
    )
    assert_valid(raw(updated))
    assert updated.invoice_settings is not None
    assert updated.invoice_settings.default_payment_method == mine.id
    merged = client.v1.customers.update(customer.id, params={"metadata": {"tier": ""}})
    assert raw(merged)["metadata"] == {"account_id": "acct_1"}
    fetched = client.v1.customers.retrieve(customer.id)
    assert fetched.invoice_settings is not None
    assert fetched.invoice_settings.default_payment_method == mine.id

    [first_update, second_update] = delivered_events(
        receiver, customer.id, "customer.updated", count=2
    )
    assert first_update.event["data"]["previous_attributes"] == {
        "invoice_settings": {"default_payment_method": None},
        "metadata": {"account_id": None, "tier": None},
    }
    assert second_update.event["data"]["previous_attributes"] == {"metadata": {"tier": "gold"}}
    expanded = client.v1.customers.retrieve(
        customer.id, params={"expand": ["invoice_settings.default_payment_method"]}
    )
    assert expanded.invoice_settings is not None
    assert isinstance(expanded.invoice_settings.default_payment_method, stripe.PaymentMethod)

    client.v1.payment_methods.detach(mine.id)
    cleared = client.v1.customers.retrieve(customer.id)
    assert cleared.invoice_settings is not None
    assert cleared.invoice_settings.default_payment_method is None


def test_4242_charges_off_session(client: stripe.StripeClient, receiver: WebhookReceiver) -> None:
    customer = _customer(client)
    card = _saved_card(client, customer.id, "pm_card_visa")
    intent = _charge(client, customer.id, card.id)
    assert_valid(raw(intent))
    assert intent.id.startswith("pi_")
    assert (intent.status, intent.amount, intent.amount_received) == ("succeeded", 2000, 2000)
    assert (intent.customer, intent.payment_method) == (customer.id, card.id)
    assert intent.description == "Auto-recharge"
    assert raw(intent)["metadata"] == {"account_id": "acct_7", "kind": "auto_recharge"}
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert_valid(raw(charge))
    assert (charge.status, charge.paid, charge.amount, charge.payment_method) == (
        "succeeded",
        True,
        2000,
        card.id,
    )
    assert charge.payment_method_details is not None
    assert charge.payment_method_details.card is not None
    assert charge.payment_method_details.card.last4 == "4242"

    [succeeded] = delivered_events(receiver, intent.id, "payment_intent.succeeded")
    assert succeeded.event["data"]["object"]["metadata"] == {
        "account_id": "acct_7",
        "kind": "auto_recharge",
    }
    assert succeeded.event["data"]["object"]["latest_charge"] == charge.id
    delivered_events(receiver, intent.id, "charge.succeeded")
    assert event_types(client, intent.id) == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]

    fetched = client.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["payment_method", "latest_charge"]}
    )
    assert isinstance(fetched.payment_method, stripe.PaymentMethod)
    assert isinstance(fetched.latest_charge, stripe.Charge)
    listed = client.v1.payment_intents.list(params={"customer": customer.id})
    assert [pi.id for pi in listed.data] == [intent.id]


@pytest.mark.parametrize(
    ("token", "code", "decline_code", "message"),
    [
        (
            "pm_card_chargeCustomerFail",
            "card_declined",
            "generic_decline",
            "Your card was declined.",
        ),
        (
            "pm_card_authenticationRequired",
            "authentication_required",
            "authentication_required",
            "This transaction requires authentication.",
        ),
        (
            "pm_card_authenticationRequiredOnSetup",
            "authentication_required",
            "authentication_required",
            "This transaction requires authentication.",
        ),
    ],
)
def test_off_session_failures_are_402_card_errors(
    client: stripe.StripeClient,
    receiver: WebhookReceiver,
    token: str,
    code: str,
    decline_code: str,
    message: str,
) -> None:
    customer = _customer(client)
    card = _saved_card(client, customer.id, token)
    with pytest.raises(stripe.CardError) as failed:
        _charge(client, customer.id, card.id)
    error = failed.value
    assert error.http_status == 402
    assert (error.code, error.param) == (code, None)
    body = error_body(error)
    assert_valid(body, "error")
    assert body["error"]["type"] == "card_error"
    assert body["error"]["decline_code"] == decline_code
    assert message in body["error"]["message"]
    assert body["error"]["payment_method"]["id"] == card.id
    intent = body["error"]["payment_intent"]
    assert intent["status"] == "requires_payment_method"
    assert intent["payment_method"] is None
    assert intent["last_payment_error"]["code"] == code
    assert intent["last_payment_error"]["payment_method"]["id"] == card.id
    assert body["error"]["charge"] == intent["latest_charge"]

    fetched = client.v1.payment_intents.retrieve(intent["id"])
    assert_valid(raw(fetched))
    assert fetched.status == "requires_payment_method"
    assert fetched.last_payment_error is not None
    assert fetched.last_payment_error.decline_code == decline_code
    charge = client.v1.charges.retrieve(intent["latest_charge"])
    assert (charge.status, charge.failure_code) == ("failed", code)

    [failed_event] = delivered_events(receiver, intent["id"], "payment_intent.payment_failed")
    failed_intent = failed_event.event["data"]["object"]
    assert failed_intent["last_payment_error"]["code"] == code
    assert failed_intent["metadata"] == {"account_id": "acct_7", "kind": "auto_recharge"}
    delivered_events(receiver, intent["id"], "charge.failed")
    assert event_types(client, intent["id"]) == [
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
    ]


def test_a_card_needing_authentication_only_on_setup_charges_off_session_once_set_up(
    client: stripe.StripeClient,
) -> None:
    customer = _customer(client)
    setup = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method": "pm_card_authenticationRequiredOnSetup",
            "confirm": True,
        }
    )
    # Setting it up needs the customer's 3-D Secure, which only the hosted page can give.
    assert setup.status == "requires_action"
    assert setup.next_action is not None

    card = _saved_card(client, customer.id, "pm_card_visa")
    saved = client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method": card.id, "confirm": True}
    )
    assert saved.status == "succeeded"
    assert _charge(client, customer.id, card.id).status == "succeeded"


def test_on_session_a_3ds_card_requires_action(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    card = _saved_card(client, customer.id, "pm_card_authenticationRequired")
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": card.id,
            "confirm": True,
        }
    )
    assert_valid(raw(intent))
    assert intent.status == "requires_action"
    assert intent.next_action is not None
    assert intent.next_action.type == "use_stripe_sdk"


def test_an_idempotency_key_replays_a_charge_and_a_decline(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    good = _saved_card(client, customer.id, "pm_card_visa")
    key = f"recharge-{uuid.uuid4()}"
    first = _charge(client, customer.id, good.id, key=key)
    again = _charge(client, customer.id, good.id, key=key)
    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers.get("idempotent-replayed") == "true"

    bad = _saved_card(client, customer.id, "pm_card_chargeCustomerFail")
    decline_key = f"recharge-{uuid.uuid4()}"
    bodies = []
    for _ in range(2):
        with pytest.raises(stripe.CardError) as declined:
            _charge(client, customer.id, bad.id, key=decline_key)
        assert (declined.value.http_status, declined.value.code) == (402, "card_declined")
        bodies.append(error_body(declined.value))
    assert bodies[0] == bodies[1]
    assert declined.value.headers is not None
    assert declined.value.headers.get("idempotent-replayed") == "true"

    listed = client.v1.payment_intents.list(params={"customer": customer.id})
    assert sorted(pi.id for pi in listed.data) == sorted(
        [first.id, bodies[0]["error"]["payment_intent"]["id"]]
    )


def test_a_detached_card_cannot_be_charged(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    card = _saved_card(client, customer.id, "pm_card_visa")
    client.v1.payment_methods.detach(card.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _charge(client, customer.id, card.id)
    assert (refused.value.http_status, refused.value.param) == (400, "payment_method")
    assert "detached" in str(refused.value.user_message)
    assert_valid(error_body(refused.value), "error")
    assert client.v1.payment_intents.list(params={"customer": customer.id}).data == []

    stranger = _customer(client)
    theirs = _saved_card(client, stranger.id, "pm_card_visa")
    with pytest.raises(stripe.InvalidRequestError) as not_theirs:
        _charge(client, customer.id, theirs.id)
    assert not_theirs.value.param == "payment_method"


def test_payment_intent_parameters_are_checked(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    card = _saved_card(client, customer.id, "pm_card_visa")
    base: JSON = {"amount": 2000, "currency": "usd", "customer": customer.id}
    cases: list[tuple[JSON, str]] = [
        ({"amount": 10}, "amount"),
        ({"off_session": True, "payment_method": card.id}, "off_session"),
        ({"confirm": True}, "payment_method"),
        ({"colour": "red"}, "colour"),
    ]
    for changes, param in cases:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.payment_intents.create(params=cast(Any, {**base, **changes}))
        assert refused.value.param == param
    unconfirmed = client.v1.payment_intents.create(
        params={**base, "payment_method": card.id}  # type: ignore[typeddict-item]
    )
    assert unconfirmed.status == "requires_confirmation"


def test_setup_intents_save_a_card_or_refuse_it(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    customer = _customer(client)
    intent = client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method": "pm_card_chargeCustomerFail",
            "confirm": True,
            "usage": "off_session",
            "metadata": {"account_id": "acct_9"},
        }
    )
    assert_valid(raw(intent))
    assert intent.id.startswith("seti_")
    assert (intent.status, intent.usage, intent.customer) == (
        "succeeded",
        "off_session",
        customer.id,
    )
    fetched = client.v1.setup_intents.retrieve(intent.id, params={"expand": ["payment_method"]})
    assert isinstance(fetched.payment_method, stripe.PaymentMethod)
    assert fetched.payment_method.customer == customer.id
    assert raw(fetched)["metadata"] == {"account_id": "acct_9"}
    listed = client.v1.setup_intents.list(params={"customer": customer.id})
    assert [si.id for si in listed.data] == [intent.id]
    delivered_events(receiver, intent.id, "setup_intent.succeeded")
    assert event_types(client, intent.id) == ["setup_intent.created", "setup_intent.succeeded"]

    with pytest.raises(stripe.CardError) as declined:
        client.v1.setup_intents.create(
            params={
                "customer": customer.id,
                "payment_method": "pm_card_chargeDeclined",
                "confirm": True,
            }
        )
    body = error_body(declined.value)
    assert declined.value.http_status == 402
    assert_valid(body, "error")
    assert (body["error"]["code"], body["error"]["decline_code"]) == (
        "card_declined",
        "generic_decline",
    )
    failed = body["error"]["setup_intent"]
    assert failed["status"] == "requires_payment_method"
    assert failed["last_setup_error"]["code"] == "card_declined"
    delivered_events(receiver, failed["id"], "setup_intent.setup_failed")
    assert len(client.v1.customers.payment_methods.list(customer.id).data) == 1

    pending = client.v1.setup_intents.create(params={"customer": customer.id})
    assert (pending.status, pending.payment_method) == ("requires_payment_method", None)


def _timed_emulator(
    data_dir: Path, receiver: WebhookReceiver, path: str, timing: str
) -> EmulatorProcess:
    return EmulatorProcess(
        data_dir,
        "--forward-to",
        receiver.url(path),
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--webhook-timing",
        timing,
    ).start()


class RawCharge:
    """An off-session charge sent over a plain socket whose response is not read until asked,
    so a webhook receiver can tell whether the response had been sent when it was called."""

    def __init__(self, emulator: EmulatorProcess, customer_id: str, card_id: str) -> None:
        body = urllib.parse.urlencode(
            {
                "amount": "2000",
                "currency": "usd",
                "customer": customer_id,
                "payment_method": card_id,
                "confirm": "true",
                "off_session": "true",
            }
        )
        request = (
            "POST /v1/payment_intents HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{emulator.port}\r\n"
            f"Authorization: Bearer {API_KEY}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
            f"{body}"
        )
        self.socket = socket.create_connection(("127.0.0.1", emulator.port), timeout=10)
        self.socket.sendall(request.encode())

    def response_sent(self) -> bool:
        """Whether the response has reached this end (without consuming it)."""
        readable, _, _ = select.select([self.socket], [], [], 0)
        return bool(readable)

    def intent(self) -> JSON:
        chunks = []
        while chunk := self.socket.recv(65536):
            chunks.append(chunk)
        self.socket.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        intent: JSON = json.loads(body)
        return intent


def _charge_observed(
    emulator: EmulatorProcess, receiver: WebhookReceiver, path: str
) -> tuple[JSON, list[ReceivedWebhook]]:
    """Charge a saved card; returns the intent and its three deliveries, each probed on arrival
    for whether the API response had been sent."""
    client = emulator.client()
    customer = _customer(client)
    card = _saved_card(client, customer.id, "pm_card_visa")
    receiver.wait_for(path, lambda w: about(card.id)(w))  # the set-up's events are out of the way
    charge = RawCharge(emulator, customer.id, card.id)
    receiver.probes[path] = charge.response_sent
    try:
        # The response stays unread until every delivery has been probed.
        received = receiver.wait_for(path, lambda w: w.event["id"] in receiver.probed, count=3)
    finally:
        del receiver.probes[path]
    intent = charge.intent()
    assert all(about(intent["id"])(w) for w in received)
    assert [w.event["type"] for w in received] == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    assert received[-1].event["data"]["object"]["status"] == "succeeded"
    return intent, received


def test_webhooks_can_arrive_before_the_response(receiver: WebhookReceiver, data_dir: Path) -> None:
    path = "/before-response"
    emulator = _timed_emulator(data_dir, receiver, path, "before_response")
    try:
        _, received = _charge_observed(emulator, receiver, path)
        assert [receiver.probed[w.event["id"]] for w in received] == [False, False, False]

        # A request can ask for the other order, whatever the emulator's setting.
        client = emulator.client()
        customer = _customer(client)
        card = _saved_card(client, customer.id, "pm_card_visa")
        later = _charge(
            client,
            customer.id,
            card.id,
            headers={"Stripe-Emulator-Webhook-Timing": "after_response"},
        )
        assert len(receiver.wait_for(path, about(later.id), count=3)) == 3
    finally:
        assert emulator.stop() == 0


def test_webhooks_can_arrive_after_the_response(receiver: WebhookReceiver, data_dir: Path) -> None:
    path = "/after-response"
    emulator = _timed_emulator(data_dir, receiver, path, "queued")
    try:
        # Switched while running, as a test suite sharing one emulator would.
        setting = f"{emulator.base_url}/_emulator/webhook-timing"
        assert httpx.post(setting, json={"timing": "whenever"}).status_code == 400
        assert httpx.post(setting, json={"timing": "after_response"}).status_code == 200
        assert httpx.get(setting).json() == {"timing": "after_response"}
        _, received = _charge_observed(emulator, receiver, path)
        assert [receiver.probed[w.event["id"]] for w in received] == [True, True, True]
    finally:
        assert emulator.stop() == 0


def test_an_unknown_webhook_timing_is_refused(emulator: EmulatorProcess) -> None:
    answer = httpx.get(
        f"{emulator.base_url}/v1/customers",
        auth=("sk_test_emulator_tests", ""),
        headers={"Stripe-Emulator-Webhook-Timing": "whenever"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "stripe-emulator-webhook-timing"


def test_the_customers_page_shows_saved_cards_and_intents(
    client: stripe.StripeClient, emulator: EmulatorProcess
) -> None:
    customer = _customer(client)
    card = _saved_card(client, customer.id, "pm_card_visa")
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    setup = client.v1.setup_intents.create(
        params={"customer": customer.id, "payment_method": card.id, "confirm": True}
    )
    paid = _charge(client, customer.id, card.id)
    needs_3ds = _saved_card(client, customer.id, "pm_card_authenticationRequired")
    with pytest.raises(stripe.CardError):
        _charge(client, customer.id, needs_3ds.id)

    page = httpx.get(f"{emulator.base_url}/_emulator/customers")
    assert page.status_code == 200
    html = page.text
    for shown in (customer.id, card.id, needs_3ds.id, setup.id, paid.id, "USD 20.00"):
        assert shown in html
    assert "visa •••• 4242" in html
    assert "authentication_required" in html
    assert html.count(">default<") == 1
    assert "/_emulator/customers" in httpx.get(f"{emulator.base_url}/_emulator").text


def test_a_declined_intent_is_confirmed_again_with_another_card_or_canceled(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    customer = _customer(client)
    failing = _saved_card(client, customer.id, "pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError) as declined:
        _charge(client, customer.id, failing.id)
    intent_id = error_body(declined.value)["error"]["payment_intent"]["id"]
    good = _saved_card(client, customer.id, "pm_card_visa")
    retried = client.v1.payment_intents.confirm(
        intent_id, params={"payment_method": good.id, "off_session": True}
    )
    assert_valid(raw(retried))
    assert (retried.status, retried.payment_method, retried.last_payment_error) == (
        "succeeded",
        good.id,
        None,
    )
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.payment_intents.confirm(intent_id)
    assert (again.value.http_status, again.value.code) == (400, "payment_intent_unexpected_state")
    with pytest.raises(stripe.InvalidRequestError) as too_late:
        client.v1.payment_intents.cancel(intent_id)
    assert too_late.value.code == "payment_intent_unexpected_state"

    needs_3ds = _saved_card(client, customer.id, "pm_card_authenticationRequired")
    waiting = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": needs_3ds.id,
            "confirm": True,
        }
    )
    assert waiting.status == "requires_action"
    canceled = client.v1.payment_intents.cancel(
        waiting.id, params={"cancellation_reason": "abandoned"}
    )
    assert_valid(raw(canceled))
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    assert canceled.canceled_at is not None
    delivered_events(receiver, waiting.id, "payment_intent.canceled")
