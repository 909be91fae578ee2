"""Saving a card through Checkout: a payment that also saves the card (setup_future_usage), and
setup-mode sessions on the hosted "Save card" page, with their SetupIntents and events."""

from __future__ import annotations

import re
import uuid
from typing import Any, cast

import httpx
import pytest
import stripe

from tests.stripe_emulator.support import (
    WebhookReceiver,
    assert_valid,
    assert_valid_response,
    create_session,
    delivered_events,
    event_types,
    raw,
)
from tests.support.stripe import EmulatorProcess, pay_by_card

SUCCESS_URL = "http://127.0.0.1:9/billing/cards?session_id={CHECKOUT_SESSION_ID}"


def _customer(client: stripe.StripeClient) -> stripe.Customer:
    return client.v1.customers.create(params={"email": f"{uuid.uuid4().hex[:8]}@example.com"})


def _setup_session(client: stripe.StripeClient, **params: Any) -> stripe.checkout.Session:
    defaults: dict[str, Any] = {
        "mode": "setup",
        "currency": "usd",
        "success_url": SUCCESS_URL,
        "cancel_url": "http://127.0.0.1:9/billing",
        "setup_intent_data": {"metadata": {"account_id": "acct_3"}},
    }
    return client.v1.checkout.sessions.create(params=cast(Any, {**defaults, **params}))


def _charge_off_session(
    client: stripe.StripeClient, customer_id: str, payment_method_id: str
) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={
            "amount": 1500,
            "currency": "usd",
            "customer": customer_id,
            "payment_method": payment_method_id,
            "confirm": True,
            "off_session": True,
        }
    )


@pytest.mark.parametrize("usage", ["off_session", "on_session"])
def test_a_payment_with_setup_future_usage_saves_the_card(
    client: stripe.StripeClient, receiver: WebhookReceiver, usage: str
) -> None:
    customer = _customer(client)
    session = create_session(
        client, customer=customer.id, payment_intent_data={"setup_future_usage": usage}
    )
    assert pay_by_card(str(session.url), "4242424242424242").status_code == 303

    paid = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert_valid(raw(paid))
    intent = paid.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert (intent.status, intent.setup_future_usage) == ("succeeded", usage)
    card = client.v1.payment_methods.retrieve(str(intent.payment_method))
    assert_valid(raw(card))
    assert card.customer == customer.id
    assert card.card is not None
    assert card.card.last4 == "4242"
    [attached] = delivered_events(receiver, card.id, "payment_method.attached")
    assert attached.event["data"]["object"]["customer"] == customer.id

    assert _charge_off_session(client, customer.id, card.id).status == "succeeded"


def test_a_payment_without_setup_future_usage_saves_nothing(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    session = create_session(client, customer=customer.id)
    assert pay_by_card(str(session.url), "4242424242424242").status_code == 303
    intent = client.v1.payment_intents.retrieve(
        str(client.v1.checkout.sessions.retrieve(session.id).payment_intent)
    )
    assert intent.setup_future_usage is None
    assert client.v1.customers.payment_methods.list(customer.id).data == []


def test_a_3155_card_saved_while_paying_charges_off_session_afterwards(
    client: stripe.StripeClient,
) -> None:
    customer = _customer(client)
    session = create_session(
        client, customer=customer.id, payment_intent_data={"setup_future_usage": "off_session"}
    )
    assert pay_by_card(str(session.url), "4000002500003155").status_code == 303
    done = httpx.post(f"{session.url}/authenticate", data={"outcome": "complete"})
    assert done.status_code == 303
    [card] = client.v1.customers.payment_methods.list(customer.id).data
    assert _charge_off_session(client, customer.id, card.id).status == "succeeded"


def test_the_setup_page_saves_a_card_without_an_amount(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    customer = _customer(client)
    session = _setup_session(client, customer=customer.id)
    assert_valid_response(raw(session), "/v1/checkout/sessions", "post")
    assert (session.mode, session.status, session.payment_status) == (
        "setup",
        "open",
        "no_payment_required",
    )
    assert (session.amount_total, session.setup_intent, session.currency) == (None, None, "usd")

    page = httpx.get(str(session.url))
    assert page.status_code == 200
    assert "<title>Save card" in page.text
    assert '<button type="submit">Save card</button>' in page.text
    assert "USD" not in page.text
    assert "routingNumber" not in page.text

    answer = pay_by_card(str(session.url), "4242424242424242")
    assert answer.status_code == 303
    assert answer.headers["location"] == SUCCESS_URL.replace("{CHECKOUT_SESSION_ID}", session.id)

    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["setup_intent"]})
    assert_valid(raw(done))
    assert (done.status, done.payment_status, done.url) == (
        "complete",
        "no_payment_required",
        None,
    )
    intent = done.setup_intent
    assert isinstance(intent, stripe.SetupIntent)
    assert intent.id.startswith("seti_")
    assert (intent.status, intent.usage, intent.customer) == (
        "succeeded",
        "off_session",
        customer.id,
    )
    assert raw(done)["setup_intent"]["metadata"] == {"account_id": "acct_3"}
    [card] = client.v1.customers.payment_methods.list(customer.id).data
    assert (card.id, card.customer) == (intent.payment_method, customer.id)

    delivered_events(receiver, intent.id, "setup_intent.succeeded")
    [completed] = delivered_events(receiver, session.id, "checkout.session.completed")
    assert completed.event["data"]["object"]["setup_intent"] == intent.id
    related = {intent.id, session.id, card.id}
    events = raw(client.v1.events.list(params={"limit": 20}))["data"]
    ordered = [e["type"] for e in reversed(events) if e["data"]["object"]["id"] in related]
    assert ordered == [
        "setup_intent.created",
        "payment_method.attached",
        "setup_intent.succeeded",
        "checkout.session.completed",
    ]

    assert _charge_off_session(client, customer.id, card.id).status == "succeeded"


def test_the_setup_page_refuses_a_declining_card_and_saves_0341(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    customer = _customer(client)
    session = _setup_session(client, customer=customer.id)
    declined = pay_by_card(str(session.url), "4000000000000002")
    assert declined.status_code == 402
    assert "Your card was declined." in declined.text
    still_open = client.v1.checkout.sessions.retrieve(session.id)
    assert still_open.status == "open"
    intent = client.v1.setup_intents.retrieve(str(still_open.setup_intent))
    assert_valid(raw(intent))
    assert intent.status == "requires_payment_method"
    assert intent.last_setup_error is not None
    assert intent.last_setup_error.code == "card_declined"
    delivered_events(receiver, intent.id, "setup_intent.setup_failed")
    assert client.v1.customers.payment_methods.list(customer.id).data == []

    assert pay_by_card(str(session.url), "4000000000000341").status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.setup_intent) == ("complete", intent.id)
    [card] = client.v1.customers.payment_methods.list(customer.id).data
    assert event_types(client, intent.id) == [
        "setup_intent.created",
        "setup_intent.setup_failed",
        "setup_intent.succeeded",
        "checkout.session.completed",
    ]
    with pytest.raises(stripe.CardError) as fails_later:
        _charge_off_session(client, customer.id, card.id)
    assert fails_later.value.code == "card_declined"


def test_the_setup_page_authenticates_a_3ds_card(client: stripe.StripeClient) -> None:
    customer = _customer(client)
    session = _setup_session(client, customer=customer.id)
    assert pay_by_card(str(session.url), "4000002760003184").status_code == 303
    challenge = httpx.get(f"{session.url}/authenticate")
    assert "Authenticate saving your card" in challenge.text
    waiting = client.v1.setup_intents.retrieve(
        str(client.v1.checkout.sessions.retrieve(session.id).setup_intent)
    )
    assert waiting.status == "requires_action"

    failed = httpx.post(f"{session.url}/authenticate", data={"outcome": "fail"})
    assert failed.status_code == 402
    refused = client.v1.setup_intents.retrieve(waiting.id)
    assert refused.last_setup_error is not None
    assert refused.last_setup_error.code == "setup_intent_authentication_failure"

    pay_by_card(str(session.url), "4000002760003184")
    done = httpx.post(f"{session.url}/authenticate", data={"outcome": "complete"})
    assert done.status_code == 303
    assert client.v1.setup_intents.retrieve(waiting.id).status == "succeeded"
    # Saved, yet this card needs authentication on every payment, off-session ones too.
    [card] = client.v1.customers.payment_methods.list(customer.id).data
    with pytest.raises(stripe.CardError) as needs_customer:
        _charge_off_session(client, customer.id, card.id)
    assert needs_customer.value.code == "authentication_required"


def test_setup_mode_parameters_are_checked(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as no_currency:
        _setup_session(client, currency=None)
    assert (no_currency.value.code, no_currency.value.param) == ("parameter_missing", "currency")
    with_types = _setup_session(client, currency=None, payment_method_types=["card"])
    assert with_types.currency is None
    with pytest.raises(stripe.InvalidRequestError) as items:
        _setup_session(
            client,
            line_items=[
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 100,
                        "product_data": {"name": "x"},
                    },
                }
            ],
        )
    assert items.value.param == "line_items"
    with pytest.raises(stripe.InvalidRequestError) as other_currency:
        create_session(client, currency="eur")
    assert other_currency.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as wrong_data:
        create_session(client, setup_intent_data={"metadata": {"a": "b"}})
    assert wrong_data.value.param == "setup_intent_data"


def test_a_setup_session_without_a_customer_leaves_the_card_to_attach(
    client: stripe.StripeClient,
) -> None:
    session = _setup_session(client, customer_email="nobody@example.com")
    assert pay_by_card(str(session.url), "4242424242424242").status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["setup_intent"]})
    intent = done.setup_intent
    assert isinstance(intent, stripe.SetupIntent)
    assert (intent.status, intent.customer) == ("succeeded", None)
    card = client.v1.payment_methods.retrieve(str(intent.payment_method))
    assert card.customer is None
    customer = _customer(client)
    attached = client.v1.payment_methods.attach(card.id, params={"customer": customer.id})
    assert attached.customer == customer.id
    assert _charge_off_session(client, customer.id, card.id).status == "succeeded"


def test_triggers_save_a_card_on_a_setup_session(
    client: stripe.StripeClient, emulator: EmulatorProcess
) -> None:
    made = emulator.trigger("setup_intent.succeeded")
    assert made.returncode == 0, made.stderr
    [session_id] = re.findall(r"cs_test_\w+", made.stdout)
    session = client.v1.checkout.sessions.retrieve(session_id, params={"expand": ["setup_intent"]})
    assert (session.mode, session.status) == ("setup", "complete")
    intent = session.setup_intent
    assert isinstance(intent, stripe.SetupIntent)
    assert intent.status == "succeeded"
    [card] = client.v1.customers.payment_methods.list(str(session.customer)).data
    assert card.id == intent.payment_method
    emitted = set(re.findall(r"evt_\w+", made.stdout))
    types = {client.v1.events.retrieve(event_id).type for event_id in emitted}
    assert {"setup_intent.succeeded", "payment_method.attached", "customer.created"} <= types

    failed = emulator.trigger("setup_intent.setup_failed")
    assert failed.returncode == 0, failed.stderr
    [open_id] = re.findall(r"cs_test_\w+", failed.stdout)
    assert client.v1.checkout.sessions.retrieve(open_id).status == "open"
