"""The hosted checkout page over plain HTTP: labels and names, test cards, authentication, the
delayed bank account, expiry — and the objects and signed webhooks each outcome produces."""

from __future__ import annotations

import re
import time

import httpx
import pytest
import stripe

from tests.stripe_emulator.support import (
    MAIN_PATH,
    WEBHOOK_SECRET,
    WebhookReceiver,
    about,
    assert_valid,
    create_session,
    raw,
)
from tests.support.markup import elements
from tests.support.stripe import pay_by_bank_account, pay_by_card


def test_the_page_is_a_labelled_form_without_javascript(client: stripe.StripeClient) -> None:
    session = create_session(client)
    page = httpx.get(str(session.url))
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html
    for field, label in [
        ("email", "Email"),
        ("cardNumber", "Card number"),
        ("cardExpiry", "Expiration"),
        ("cardCvc", "CVC"),
        ("billingPostalCode", "ZIP"),
    ]:
        assert f'<label for="{field}">{label}</label>' in html
        assert re.search(rf'<input id="{field}" name="{field}"', html), field
    assert 'placeholder="MM / YY"' in html
    assert re.search(r'<button type="submit">Pay</button>', html)
    assert '<a href="http://127.0.0.1:9/cart">Back</a>' in html
    # The line: its product's name and description, the quantity, the amount.
    assert [item.text for item in elements(html, "data-line-item")] == [
        "NVIDIA H100 x 1, 10 h 1 GPU, 16 vCPU, 200 GB NVMe Qty 2"
    ]
    assert "USD 25.00" in html


def test_a_product_without_a_description_shows_its_name_and_quantity(
    client: stripe.StripeClient,
) -> None:
    session = create_session(
        client,
        line_items=[
            {
                "quantity": 1,
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 500,
                    "product_data": {"name": "Compute credit"},
                },
            }
        ],
    )
    html = httpx.get(str(session.url)).text
    assert [item.text for item in elements(html, "data-line-item")] == ["Compute credit Qty 1"]
    assert elements(html, "data-product-description") == []


def test_a_good_card_pays_and_redirects_to_success_url(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    session = create_session(client, payment_intent_data={"metadata": {"order_id": "o_1"}})
    answer = pay_by_card(str(session.url), "4242 4242 4242 4242")
    assert answer.status_code == 303
    assert answer.headers["location"] == (
        f"http://127.0.0.1:9/orders/success?session_id={session.id}"
    )

    paid = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert_valid(raw(paid))
    assert (paid.status, paid.payment_status, paid.url) == ("complete", "paid", None)
    assert paid.customer_details is not None
    assert paid.customer_details.email == "buyer@example.com"
    intent = paid.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert intent.id.startswith("pi_")
    assert (intent.status, intent.amount, intent.amount_received) == ("succeeded", 2500, 2500)
    assert intent.metadata["order_id"] == "o_1"
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert_valid(raw(charge))
    assert charge.id.startswith("ch_")
    assert (charge.paid, charge.status, charge.amount_captured) == (True, "succeeded", 2500)
    assert charge.payment_method_details is not None
    assert charge.payment_method_details.card is not None
    assert charge.payment_method_details.card.last4 == "4242"
    assert_valid(raw(client.v1.payment_intents.retrieve(intent.id)))

    received = receiver.wait_for(MAIN_PATH, about(session.id, intent.id), count=4)
    for webhook in received:
        assert_valid(webhook.event)
        assert_valid(webhook.event["data"]["object"])
    types = [webhook.verified(WEBHOOK_SECRET).type for webhook in received]
    assert sorted(types) == sorted(
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded",
            "checkout.session.completed",
        ]
    )
    [completed] = receiver.wait_for(
        MAIN_PATH,
        lambda w: w.event["type"] == "checkout.session.completed" and about(session.id)(w),
    )
    event = completed.event
    assert_valid(event)
    assert event["data"]["object"]["payment_status"] == "paid"
    assert event["request"] == {"id": None, "idempotency_key": None}
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", completed.signature)


@pytest.mark.parametrize(
    ("number", "code", "decline_code", "message"),
    [
        ("4000000000000002", "card_declined", "generic_decline", "Your card was declined."),
        ("4000000000009995", "card_declined", "insufficient_funds", "insufficient funds"),
        ("4000000000000069", "expired_card", "expired_card", "Your card has expired."),
        ("4000000000000127", "incorrect_cvc", "incorrect_cvc", "security code is incorrect"),
        ("4000000000000119", "processing_error", "processing_error", "error occurred"),
    ],
)
def test_declines_leave_the_session_open_with_the_error_shown(
    client: stripe.StripeClient, number: str, code: str, decline_code: str, message: str
) -> None:
    session = create_session(client)
    answer = pay_by_card(str(session.url), number)
    assert answer.status_code == 402
    assert message in answer.text.replace("&#39;", "'")
    assert '<button type="submit">Pay</button>' in answer.text

    still_open = client.v1.checkout.sessions.retrieve(session.id)
    assert (still_open.status, still_open.payment_status) == ("open", "unpaid")
    intent = client.v1.payment_intents.retrieve(str(still_open.payment_intent))
    assert_valid(raw(intent))
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None
    assert (intent.last_payment_error.code, intent.last_payment_error.decline_code) == (
        code,
        decline_code,
    )
    failed_charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert (failed_charge.status, failed_charge.failure_code) == ("failed", code)

    retry = pay_by_card(str(session.url), "4242424242424242")
    assert retry.status_code == 303
    paid = client.v1.checkout.sessions.retrieve(session.id)
    assert (paid.payment_status, paid.payment_intent) == ("paid", intent.id)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"cardNumber": "4242424242424241"}, "card number is invalid"),
        ({"cardNumber": "4242"}, "card number is invalid"),
        ({"cardExpiry": "01 / 20"}, "expiration date is in the past"),
        ({"cardExpiry": "13 / 40"}, "expiration date is incomplete"),
        ({"cardCvc": "1"}, "security code is incomplete"),
        ({"email": "not-an-email"}, "email address is invalid"),
    ],
)
def test_malformed_input_is_refused_on_the_page(
    client: stripe.StripeClient, fields: dict[str, str], error: str
) -> None:
    session = create_session(client)
    answer = pay_by_card(str(session.url), fields.pop("cardNumber", "4242424242424242"), **fields)
    assert answer.status_code == 400
    assert error in answer.text.replace("&#39;", "'")
    untouched = client.v1.checkout.sessions.retrieve(session.id)
    assert (untouched.status, untouched.payment_intent) == ("open", None)


@pytest.mark.parametrize("number", ["4000002760003184", "4000002500003155"])
def test_authentication_step_completed_pays(client: stripe.StripeClient, number: str) -> None:
    session = create_session(client)
    answer = pay_by_card(str(session.url), number)
    assert answer.status_code == 303
    challenge_url = f"{session.url}/authenticate"
    assert str(httpx.URL(str(session.url)).join(answer.headers["location"])) == challenge_url
    waiting = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent"]}
    )
    assert isinstance(waiting.payment_intent, stripe.PaymentIntent)
    assert waiting.payment_intent.status == "requires_action"
    assert_valid(raw(waiting))

    challenge = httpx.get(challenge_url)
    assert "Complete authentication" in challenge.text
    done = httpx.post(challenge_url, data={"outcome": "complete"})
    assert done.status_code == 303
    assert session.id in done.headers["location"]
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"


def test_authentication_step_failed_declines(client: stripe.StripeClient) -> None:
    session = create_session(client)
    pay_by_card(str(session.url), "4000002760003184")
    failed = httpx.post(f"{session.url}/authenticate", data={"outcome": "fail"})
    assert failed.status_code == 402
    assert "unable to authenticate" in failed.text
    reopened = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["payment_intent"]}
    )
    assert reopened.status == "open"
    assert isinstance(reopened.payment_intent, stripe.PaymentIntent)
    assert reopened.payment_intent.status == "requires_payment_method"


@pytest.mark.parametrize(
    ("account", "outcome", "payment_status"),
    [
        ("000123456789", "checkout.session.async_payment_succeeded", "paid"),
        ("000111111113", "checkout.session.async_payment_failed", "unpaid"),
    ],
)
def test_bank_account_completes_unpaid_then_settles(
    client: stripe.StripeClient,
    receiver: WebhookReceiver,
    account: str,
    outcome: str,
    payment_status: str,
) -> None:
    session = create_session(client)
    answer = pay_by_bank_account(str(session.url), account)
    assert answer.status_code == 303
    completed = client.v1.checkout.sessions.retrieve(session.id)
    assert (completed.status, completed.payment_status) == ("complete", "unpaid")
    intent = client.v1.payment_intents.retrieve(str(completed.payment_intent))
    assert intent.status == "processing"

    [settled] = receiver.wait_for(
        MAIN_PATH, lambda w: w.event["type"] == outcome and about(session.id)(w), timeout=10
    )
    assert settled.verified(WEBHOOK_SECRET).data.object["payment_status"] == payment_status
    after = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert_valid(raw(after))
    assert (after.status, after.payment_status) == ("complete", payment_status)
    assert isinstance(after.payment_intent, stripe.PaymentIntent)
    expected_intent = "succeeded" if payment_status == "paid" else "requires_payment_method"
    assert after.payment_intent.status == expected_intent


def test_wrong_bank_numbers_are_refused_on_the_page(client: stripe.StripeClient) -> None:
    session = create_session(client)
    answer = pay_by_bank_account(str(session.url), "000000000000")
    assert answer.status_code == 400
    assert "000123456789" in answer.text


def test_sessions_expire_at_expires_at(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    session = create_session(client, expires_at=int(time.time()) + 2)
    [expired] = receiver.wait_for(
        MAIN_PATH,
        lambda w: w.event["type"] == "checkout.session.expired" and about(session.id)(w),
        timeout=8,
    )
    assert expired.verified(WEBHOOK_SECRET).data.object["status"] == "expired"
    page = httpx.get(str(session.url))
    assert "expired" in page.text
    refused = httpx.post(str(session.url), data={"cardNumber": "4242424242424242"})
    assert refused.status_code == 409
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
