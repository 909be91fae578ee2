"""Signed webhook delivery: Stripe's signature scheme (checked against Stripe's vectors and
the SDK), duplicates, shuffling, delays, retries, restarts, the delivery log and triggers."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from stripe_emulator.webhooks import compute_signature, signature_header
from tests.stripe_emulator.support import WebhookReceiver, about, assert_valid, create_session
from tests.stripe_emulator.write_facts import VECTORS_FILE
from tests.support.stripe import EmulatorProcess, pay_by_card

SECRET = "whsec_emulator_tests_options"
FAST_RETRIES = ("--retry-base", "0.2", "--webhook-secret", SECRET)


def _vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())
    return vectors


@pytest.mark.parametrize("vector", _vectors(), ids=lambda vector: str(vector["name"]))
def test_signature_vectors(vector: dict[str, Any]) -> None:
    payload, header, secret = vector["payload"], vector["header"], vector["secret"]
    tolerance = 300 if vector["tolerance"] == "default" else None
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
        sdk_result = "valid"
    except stripe.SignatureVerificationError as error:
        sdk_result = f"error:{error.user_message}"
    assert sdk_result.startswith(vector["expect"])  # the SDK may add a hint after it

    timestamp = re.match(r"t=(\d+)", header)
    if timestamp is None or not secret:
        return  # only parsing rules are at stake: nothing the emulator signs
    signatures = re.findall(r"v1=([^,]+)", header)
    ours = compute_signature(payload, secret, int(timestamp.group(1)))
    signature_is_right = sdk_result == "valid" or "tolerance" in sdk_result
    assert (ours in signatures) == signature_is_right
    if signature_is_right:
        ours_alone = signature_header(payload, secret, int(timestamp.group(1)))
        stripe.WebhookSignature.verify_header(payload, ours_alone, secret, None)


def _pay(emulator: EmulatorProcess) -> tuple[str, list[str]]:
    """Pay a new session by card; returns its id and its events' ids, oldest first."""
    client = emulator.client()
    session = create_session(client)
    assert pay_by_card(str(session.url), "4242424242424242").status_code == 303
    events = client.v1.events.list(params={"limit": 10})
    return session.id, [event.id for event in reversed(events.data)]


def test_duplicate_delivers_every_event_twice(receiver: WebhookReceiver, data_dir: Path) -> None:
    path = "/duplicate"
    emulator = EmulatorProcess(data_dir, "--forward-to", receiver.url(path), "--duplicate")
    emulator.options += FAST_RETRIES
    emulator.start()
    try:
        _, event_ids = _pay(emulator)
        received = receiver.wait_for(path, lambda w: True, count=2 * len(event_ids))
        assert sorted(w.verified(SECRET).id for w in received) == sorted(event_ids * 2)
    finally:
        assert emulator.stop() == 0


def test_shuffle_delivers_out_of_order(receiver: WebhookReceiver, data_dir: Path) -> None:
    path = "/shuffle"
    emulator = EmulatorProcess(data_dir, "--forward-to", receiver.url(path), "--shuffle")
    emulator.options += FAST_RETRIES
    # A delay makes all of a payment's events due in the same round.
    emulator.options += ("--delay", "0.5")
    emulator.start()
    try:
        _, event_ids = _pay(emulator)
        received = receiver.wait_for(path, lambda w: True, count=len(event_ids))
        order = [w.verified(SECRET).id for w in received]
        assert sorted(order) == sorted(event_ids)
        assert order != event_ids
    finally:
        assert emulator.stop() == 0


def test_delay_holds_deliveries_back(receiver: WebhookReceiver, data_dir: Path) -> None:
    path = "/delay"
    emulator = EmulatorProcess(data_dir, "--forward-to", receiver.url(path), "--delay", "1.5")
    emulator.options += FAST_RETRIES
    emulator.start()
    try:
        started = time.monotonic()
        customer = emulator.client().v1.customers.create(params={"email": "late@example.com"})
        assert receiver.wait_for(path, about(customer.id), timeout=1.0) == []
        [late] = receiver.wait_for(path, about(customer.id), timeout=5)
        assert time.monotonic() - started >= 1.5
        assert late.verified(SECRET).type == "customer.created"
    finally:
        assert emulator.stop() == 0


def test_failed_deliveries_are_retried_with_fresh_signatures(
    receiver: WebhookReceiver, data_dir: Path
) -> None:
    path = "/flaky"
    receiver.failures_per_event[path] = 2
    emulator = EmulatorProcess(
        data_dir,
        "--forward-to",
        receiver.url(path),
        "--webhook-secret",
        SECRET,
        "--retry-base",
        "0.6",
    ).start()
    try:
        customer = emulator.client().v1.customers.create(params={"email": "retry@example.com"})
        attempts = receiver.wait_for(path, about(customer.id), count=3, timeout=10)
        assert [w.answered for w in attempts] == [500, 500, 200]
        events = [w.verified(SECRET) for w in attempts]  # each attempt verifies on its own
        assert len({event.id for event in events}) == 1
        stamps = [int(re.findall(r"t=(\d+)", w.signature)[0]) for w in attempts]
        assert stamps[-1] > stamps[0]  # 1.8 s later: signed afresh, not replayed
        assert attempts[0].signature != attempts[-1].signature

        log = _wait_for_log(emulator, events[0].id, "succeeded")
        assert [a["status_code"] for a in log["deliveries"][0]["attempts"]] == [500, 500, 200]
        fetched = emulator.client().v1.events.retrieve(events[0].id)
        assert fetched.pending_webhooks == 0
        page = httpx.get(f"{emulator.base_url}/_emulator")
        assert events[0].id in page.text
        assert "500" in page.text
        assert "succeeded" in page.text
    finally:
        assert emulator.stop() == 0


def _wait_for_log(emulator: EmulatorProcess, event_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        log = httpx.get(f"{emulator.base_url}/_emulator/deliveries").json()
        entry: dict[str, Any] = next(item for item in log if item["id"] == event_id)
        if entry["deliveries"][0]["status"] == status or time.monotonic() > deadline:
            return entry
        time.sleep(0.1)


def test_state_and_pending_deliveries_survive_a_restart(
    receiver: WebhookReceiver, data_dir: Path
) -> None:
    """No --webhook-secret: the generated one is kept in the data dir and reused."""
    path = "/restart"
    receiver.down_paths.add(path)
    options = ("--forward-to", receiver.url(path), "--retry-base", "0.2")
    first = EmulatorProcess(data_dir, *options).start()
    client = first.client()
    session = create_session(client)
    assert pay_by_card(str(session.url), "4242424242424242").status_code == 303
    replay_key = "restart-key"
    customer = client.v1.customers.create(
        params={"email": "kept@example.com"}, options={"idempotency_key": replay_key}
    )
    secret = _secret_on_log_page(first)
    assert receiver.wait_for(path, about(customer.id), count=1)[0].answered == 503
    assert first.stop(signal.SIGINT) == 0

    receiver.down_paths.discard(path)
    second = EmulatorProcess(data_dir, *options).start()
    try:
        assert _secret_on_log_page(second) == secret
        client = second.client()
        kept = client.v1.checkout.sessions.retrieve(session.id)
        assert (kept.status, kept.payment_status) == ("complete", "paid")
        replayed = client.v1.customers.create(
            params={"email": "kept@example.com"}, options={"idempotency_key": replay_key}
        )
        assert replayed.id == customer.id
        delivered = receiver.wait_for(
            path, lambda w: w.answered == 200 and about(session.id)(w), timeout=10
        )
        assert delivered[0].verified(secret).type == "checkout.session.completed"
    finally:
        assert second.stop() == 0


def _secret_on_log_page(emulator: EmulatorProcess) -> str:
    match = re.search(r"(whsec_[A-Za-z0-9]+)", httpx.get(f"{emulator.base_url}/_emulator").text)
    assert match
    return match.group(1)


def test_trigger_command_runs_the_real_flow(receiver: WebhookReceiver, data_dir: Path) -> None:
    path = "/trigger"
    emulator = EmulatorProcess(data_dir, "--forward-to", receiver.url(path), *FAST_RETRIES)
    emulator.start()
    try:
        made = emulator.trigger("checkout.session.completed")
        assert made.returncode == 0, made.stderr
        session_id = re.findall(r"cs_test_\w+", made.stdout)[0]
        [completed] = receiver.wait_for(
            path, lambda w: w.event["type"] == "checkout.session.completed"
        )
        assert completed.verified(SECRET).data.object["id"] == session_id

        disputed = emulator.trigger("charge.dispute.created", session_id)
        assert disputed.returncode == 0, disputed.stderr
        [dispute] = receiver.wait_for(path, lambda w: w.event["type"] == "charge.dispute.created")
        dispute_event = dispute.verified(SECRET)
        assert dispute_event.data.object["id"].startswith("dp_")
        assert_valid(dispute.event)
        charge = emulator.client().v1.charges.retrieve(dispute_event.data.object["charge"])
        assert charge.disputed

        refunded = emulator.trigger("charge.refunded", session_id)
        assert refunded.returncode == 0, refunded.stderr
        assert receiver.wait_for(path, lambda w: w.event["type"] == "charge.refunded")

        unknown = emulator.trigger("invoice.paid")
        assert unknown.returncode == 1
        assert "supported" in unknown.stderr
    finally:
        assert emulator.stop() == 0
