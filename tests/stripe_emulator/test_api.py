"""Stripe's HTTP API driven by the official SDK: objects, lists, expansion, errors, idempotency."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import stripe

from tests.stripe_emulator.support import (
    MAIN_PATH,
    WEBHOOK_SECRET,
    WebhookReceiver,
    about,
    assert_valid,
    assert_valid_response,
    create_session,
    error_body,
    raw,
)
from tests.support.stripe import API_KEY, EmulatorProcess, pay_by_card


def test_customers_are_created_retrieved_and_listed(client: stripe.StripeClient) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    created = client.v1.customers.create(
        params={"email": email, "name": "Ada", "metadata": {"user_id": "42"}}
    )
    assert created.id.startswith("cus_")
    assert_valid(raw(created))

    fetched = client.v1.customers.retrieve(created.id)
    assert (fetched.email, fetched.name) == (email, "Ada")
    assert raw(fetched)["metadata"] == {"user_id": "42"}
    assert_valid(raw(fetched))

    listed = client.v1.customers.list(params={"email": email})
    assert [customer.id for customer in listed.data] == [created.id]
    for customer in raw(listed)["data"]:
        assert_valid(customer)


def test_a_checkout_session_has_stripes_shape(
    client: stripe.StripeClient, emulator: EmulatorProcess
) -> None:
    before = int(time.time())
    session = create_session(
        client,
        client_reference_id="order_7",
        customer_email="buyer@example.com",
        metadata={"order_id": "7"},
        payment_intent_data={"metadata": {"order_id": "7"}},
    )
    data = raw(session)
    assert_valid_response(data, "/v1/checkout/sessions", "post")
    assert session.id.startswith("cs_test_")
    assert (session.status, session.payment_status, session.mode) == ("open", "unpaid", "payment")
    assert (session.amount_total, session.currency) == (2500, "usd")
    assert session.url == f"{emulator.base_url}/c/pay/{session.id}"
    assert session.client_reference_id == "order_7"
    assert session.customer_email == "buyer@example.com"
    assert data["metadata"] == {"order_id": "7"}
    assert session.payment_intent is None
    assert before + 24 * 3600 <= session.expires_at <= int(time.time()) + 24 * 3600
    assert "{CHECKOUT_SESSION_ID}" in str(session.success_url)


def test_checkout_links_start_with_the_public_url(tmp_path: Path) -> None:
    """Called at one address (a container's name), the emulator hands out checkout links at the
    one browsers reach it at."""
    emulator = EmulatorProcess(tmp_path, "--public-url", "http://127.0.0.1:4242/").start()
    try:
        session = create_session(emulator.client())
    finally:
        assert emulator.stop() == 0
    assert session.url == f"http://127.0.0.1:4242/c/pay/{session.id}"


def test_line_items_are_listed_and_expandable(client: stripe.StripeClient) -> None:
    session = create_session(client)
    items = client.v1.checkout.sessions.line_items.list(
        session.id, params={"expand": ["data.price.product"]}
    )
    assert_valid_response(raw(items), "/v1/checkout/sessions/{session}/line_items")
    [item] = items.data
    assert (item.quantity, item.amount_total, item.description) == (2, 2500, item.description)
    assert item.description == "NVIDIA H100 x 1, 10 h"
    assert item.price is not None
    product = item.price.product
    assert isinstance(product, stripe.Product)
    assert product.metadata["gpu"] == "nvidia-h100"
    assert product.description == "1 GPU, 16 vCPU, 200 GB NVMe"

    expanded = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]})
    assert_valid(raw(expanded))
    assert expanded.line_items is not None
    assert [line.id for line in expanded.line_items.data] == [item.id]


def test_sessions_list_pages_with_starting_after_and_ending_before(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create(params={"email": "pages@example.com"})
    created = [create_session(client, customer=customer.id).id for _ in range(3)]
    newest_first = list(reversed(created))

    first = client.v1.checkout.sessions.list(params={"customer": customer.id, "limit": 2})
    assert_valid_response(raw(first), "/v1/checkout/sessions")
    assert [s.id for s in first.data] == newest_first[:2]
    assert first.has_more

    second = client.v1.checkout.sessions.list(
        params={"customer": customer.id, "limit": 2, "starting_after": first.data[-1].id}
    )
    assert [s.id for s in second.data] == newest_first[2:]
    assert not second.has_more

    back = client.v1.checkout.sessions.list(
        params={"customer": customer.id, "limit": 1, "ending_before": newest_first[2]}
    )
    assert [s.id for s in back.data] == [newest_first[1]]
    assert back.has_more

    everything = [s.id for s in first.auto_paging_iter()]
    assert everything == newest_first


def test_expire_only_an_open_session(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    session = create_session(client)
    expired = client.v1.checkout.sessions.expire(session.id)
    assert_valid_response(raw(expired), "/v1/checkout/sessions/{session}/expire", "post")
    assert (expired.status, expired.url) == ("expired", None)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.expire(session.id)
    assert refused.value.http_status == 400
    assert_valid(error_body(refused.value), "error")

    [webhook] = receiver.wait_for(
        MAIN_PATH, lambda w: about(session.id)(w) and w.event["type"] == "checkout.session.expired"
    )
    event = webhook.verified(WEBHOOK_SECRET)
    assert event.data.object["status"] == "expired"
    assert event.request is not None
    assert event.request.id is not None


def test_expires_at_must_be_within_24_hours(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        create_session(client, expires_at=int(time.time()) + 25 * 3600)
    assert refused.value.param == "expires_at"


def test_errors_have_stripes_shape_and_exception_classes(
    client: stripe.StripeClient, emulator: EmulatorProcess
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.create(
            params=cast(Any, {"mode": "payment", "line_items": [{"quantity": 1}]})
        )
    assert (missing.value.code, missing.value.param) == ("parameter_missing", "success_url")
    assert_valid(error_body(missing.value), "error")

    with pytest.raises(stripe.InvalidRequestError) as unknown_id:
        client.v1.payment_intents.retrieve("pi_doesnotexist")
    assert (unknown_id.value.http_status, unknown_id.value.code) == (404, "resource_missing")
    assert "pi_doesnotexist" in str(unknown_id.value.user_message)

    with pytest.raises(stripe.InvalidRequestError) as unknown_param:
        client.v1.customers.create(params=cast(Any, {"colour": "red"}))
    assert (unknown_param.value.code, unknown_param.value.param) == ("parameter_unknown", "colour")

    with pytest.raises(stripe.InvalidRequestError) as not_expandable:
        client.v1.checkout.sessions.list(params={"expand": ["data.metadata"]})
    assert not_expandable.value.param == "expand"

    bad_key = stripe.StripeClient("sk_live_nope", base_addresses={"api": emulator.base_url})
    with pytest.raises(stripe.AuthenticationError) as unauthorized:
        bad_key.v1.customers.list()
    assert unauthorized.value.http_status == 401

    no_key = httpx.get(f"{emulator.base_url}/v1/customers")
    assert no_key.status_code == 401
    assert_valid(no_key.json(), "error")
    assert no_key.json()["error"]["type"] == "invalid_request_error"

    unknown_url = httpx.get(f"{emulator.base_url}/v1/nothing", auth=(API_KEY, ""))
    assert unknown_url.status_code == 404
    assert "Unrecognized request URL" in unknown_url.json()["error"]["message"]


def test_idempotency_key_replays_the_first_answer(client: stripe.StripeClient) -> None:
    key = f"test-{uuid.uuid4()}"
    params: stripe.params.CustomerCreateParams = {"email": "idem@example.com"}
    first = client.v1.customers.create(params=params, options={"idempotency_key": key})
    again = client.v1.customers.create(params=params, options={"idempotency_key": key})
    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers.get("idempotent-replayed") == "true"

    with pytest.raises(stripe.IdempotencyError) as mismatch:
        client.v1.customers.create(
            params={"email": "other@example.com"}, options={"idempotency_key": key}
        )
    assert mismatch.value.http_status == 400
    assert error_body(mismatch.value)["error"]["type"] == "idempotency_error"


def test_idempotency_replays_errors_and_successes_even_when_state_changed(
    client: stripe.StripeClient,
) -> None:
    session = create_session(client)
    expire_key = f"expire-{uuid.uuid4()}"
    client.v1.checkout.sessions.expire(session.id, options={"idempotency_key": expire_key})
    replayed = client.v1.checkout.sessions.expire(
        session.id, options={"idempotency_key": expire_key}
    )
    assert replayed.status == "expired"  # a fresh request would be refused now

    other = create_session(client)
    pay_by_card(str(other.url), "4242424242424242")
    paid = client.v1.checkout.sessions.retrieve(other.id)
    refund_key = f"refund-{uuid.uuid4()}"
    params: stripe.params.RefundCreateParams = {
        "payment_intent": str(paid.payment_intent),
        "amount": 999999,
    }
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as too_much:
            client.v1.refunds.create(params=params, options={"idempotency_key": refund_key})
        assert too_much.value.code == "amount_too_large"


def test_refunds_full_partial_and_over_refund(
    client: stripe.StripeClient, receiver: WebhookReceiver
) -> None:
    session = create_session(client)
    assert pay_by_card(str(session.url), "4242424242424242").status_code == 303
    paid = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    intent = paid.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    charge_id = str(intent.latest_charge)

    partial = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1000})
    assert_valid_response(raw(partial), "/v1/refunds", "post")
    assert (partial.amount, partial.status, partial.charge) == (1000, "succeeded", charge_id)
    assert partial.id.startswith("re_")
    charge = client.v1.charges.retrieve(charge_id)
    assert (charge.amount_refunded, charge.refunded) == (1000, False)

    with pytest.raises(stripe.InvalidRequestError) as over:
        client.v1.refunds.create(params={"charge": charge_id, "amount": 1501})
    assert (over.value.code, over.value.param) == ("amount_too_large", "amount")

    rest = client.v1.refunds.create(params={"charge": charge_id, "reason": "requested_by_customer"})
    assert rest.amount == 1500
    charge = client.v1.charges.retrieve(charge_id)
    assert_valid(raw(charge))
    assert (charge.amount_refunded, charge.refunded) == (2500, True)
    assert_valid(raw(client.v1.refunds.retrieve(rest.id)))

    with pytest.raises(stripe.InvalidRequestError) as already:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert already.value.code == "charge_already_refunded"

    refunded = receiver.wait_for(
        MAIN_PATH, lambda w: about(charge_id)(w) and w.event["type"] == "charge.refunded", count=2
    )
    amounts = sorted(w.verified(WEBHOOK_SECRET).data.object["amount_refunded"] for w in refunded)
    assert amounts == [1000, 2500]
    created = receiver.wait_for(
        MAIN_PATH, lambda w: about(charge_id)(w) and w.event["type"] == "refund.created", count=2
    )
    assert {w.event["data"]["object"]["id"] for w in created} == {partial.id, rest.id}


def test_refund_of_an_unpaid_payment_is_refused(client: stripe.StripeClient) -> None:
    session = create_session(client)
    pay_by_card(str(session.url), "4000000000000002")
    declined = client.v1.checkout.sessions.retrieve(session.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": str(declined.payment_intent)})
    assert refused.value.http_status == 400


def test_events_are_listed_filtered_and_retrieved(client: stripe.StripeClient) -> None:
    session = create_session(client)
    client.v1.checkout.sessions.expire(session.id)
    listed = client.v1.events.list(params={"type": "checkout.session.*", "limit": 5})
    assert_valid_response(raw(listed), "/v1/events")
    assert all(event.type.startswith("checkout.session.") for event in listed.data)
    expired = next(e for e in listed.data if e.data.object["id"] == session.id)
    assert expired.type == "checkout.session.expired"

    fetched = client.v1.events.retrieve(expired.id)
    assert_valid_response(raw(fetched), "/v1/events/{id}")
    assert fetched.id.startswith("evt_")
    assert (fetched.object, fetched.livemode) == ("event", False)
    assert fetched.api_version == "2026-10-28.endive"
    assert fetched.pending_webhooks in (0, 1)
