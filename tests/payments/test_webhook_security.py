"""The webhook trusts only what Stripe signed (SECURITY-CHECKLIST 27-30): a refused delivery stores
nothing; an accepted one is stored once however often it comes. Deliveries go to the platform's
app process (it accepts the primary and the rotated secret) unless a test needs other settings."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from computebill.config import Settings
from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import Sessions
from computebill.errors import PROBLEM_JSON
from computebill.payments.models import EventStatus
from tests.support.http import in_process
from tests.support.stripe import (
    OTHER_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    body_of,
    post_event,
    signature_header,
    stored_events,
    stripe_event,
    wait_until_handled,
    with_stripe,
)

RETIRED_SECRET = "whsec_platform_tests_retired"


async def _post_raw(http: httpx.AsyncClient, body: bytes, signature: str) -> httpx.Response:
    return await http.post(
        "/webhooks/stripe",
        content=body,
        headers={"content-type": "application/json", "stripe-signature": signature},
    )


def _assert_refused(answer: httpx.Response, status: int = 400) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    expected = "invalid_signature" if status == 400 else "webhooks_unavailable"
    assert answer.json()["code"] == expected


async def _assert_stored_only_if_accepted(
    answer: httpx.Response, db: Sessions, event_id: str, status: int
) -> None:
    if status == 400:
        _assert_refused(answer)
        assert await stored_events(db, [event_id]) == {}
    else:
        assert answer.status_code == 200, answer.text
        assert list(await stored_events(db, [event_id])) == [event_id]


async def test_an_unsigned_delivery_is_refused_and_not_stored(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    event = stripe_event("checkout.session.completed")
    _assert_refused(await post_event(http, event))
    _assert_refused(await _post_raw(http, body_of(event), ""))
    _assert_refused(await _post_raw(http, body_of(event), "t=1,v1=nonsense"))
    assert await stored_events(db, [event["id"]]) == {}


async def test_a_signature_by_another_secret_is_refused(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    event = stripe_event("checkout.session.completed")
    _assert_refused(await post_event(http, event, "whsec_someone_else"))
    _assert_refused(await post_event(http, event, RETIRED_SECRET))
    assert await stored_events(db, [event["id"]]) == {}


async def test_a_reserialised_or_altered_body_no_longer_verifies(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    event = stripe_event("test.signed", {"id": "cs_test_x", "amount_total": 100})
    signed_body = body_of(event)
    signature = signature_header(signed_body, WEBHOOK_SECRET)

    compact = json.dumps(event, separators=(",", ":")).encode()  # the same JSON, spaced otherwise
    assert json.loads(compact) == json.loads(signed_body)
    _assert_refused(await _post_raw(http, compact, signature))
    altered = signed_body.replace(b'"amount_total": 100', b'"amount_total": 1')
    assert altered != signed_body
    _assert_refused(await _post_raw(http, altered, signature))
    assert await stored_events(db, [event["id"]]) == {}

    # The untouched body with the same header is accepted: only the changes were refused.
    assert (await _post_raw(http, signed_body, signature)).status_code == 200
    assert list(await stored_events(db, [event["id"]])) == [event["id"]]


@pytest.mark.parametrize(("age_seconds", "status"), [(420, 400), (3600, 400), (240, 200)])
async def test_a_signature_older_than_five_minutes_is_refused(
    http: httpx.AsyncClient, db: Sessions, age_seconds: int, status: int
) -> None:
    event = stripe_event("test.old_timestamp")
    answer = await post_event(http, event, WEBHOOK_SECRET, timestamp=int(time.time()) - age_seconds)
    await _assert_stored_only_if_accepted(answer, db, event["id"], status)


@pytest.mark.parametrize(("ahead_seconds", "status"), [(420, 400), (86400, 400), (60, 200)])
async def test_a_signature_more_than_five_minutes_in_the_future_is_refused(
    http: httpx.AsyncClient, db: Sessions, ahead_seconds: int, status: int
) -> None:
    """The SDK checks only the age: a future timestamp would keep a signature valid for longer."""
    event = stripe_event("test.future_timestamp")
    answer = await post_event(
        http, event, WEBHOOK_SECRET, timestamp=int(time.time()) + ahead_seconds
    )
    await _assert_stored_only_if_accepted(answer, db, event["id"], status)


@pytest.mark.parametrize("retired_first", [True, False])
async def test_a_header_signed_by_the_old_and_the_new_secret_is_accepted(
    http: httpx.AsyncClient, db: Sessions, retired_first: bool
) -> None:
    """During a rotation Stripe signs with both secrets, one of which the app may not know."""
    event = stripe_event("test.rotation")
    body = body_of(event)
    pair = (RETIRED_SECRET, WEBHOOK_SECRET) if retired_first else (WEBHOOK_SECRET, RETIRED_SECRET)
    answer = await _post_raw(http, body, signature_header(body, *pair))
    assert answer.status_code == 200, answer.text
    assert list(await stored_events(db, [event["id"]])) == [event["id"]]


async def test_the_second_configured_secret_is_accepted(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    event = stripe_event("test.rotation")
    answer = await post_event(http, event, OTHER_WEBHOOK_SECRET)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": True, "duplicate": False}
    assert list(await stored_events(db, [event["id"]])) == [event["id"]]


async def test_without_a_configured_secret_webhooks_are_unavailable(
    settings: Settings, db: Sessions
) -> None:
    event = stripe_event("checkout.session.completed")
    never_contacted = f"http://127.0.0.1:{free_port()}"
    unconfigured = with_stripe(settings, api_base=never_contacted, webhook_secret=None)
    async with in_process(unconfigured) as app:
        _assert_refused(await post_event(app, event, WEBHOOK_SECRET), status=503)
        _assert_refused(await post_event(app, event), status=503)
    assert await stored_events(db, [event["id"]]) == {}


def _not_events() -> list[object]:
    too_long_id = stripe_event("test.shape") | {"id": "evt_" + "x" * 300}
    no_object = stripe_event("test.shape") | {"data": {}}
    text_created = stripe_event("test.shape") | {"created": "yesterday"}
    far_created = stripe_event("test.shape") | {"created": 10**12}  # after the year 9999
    return [
        pytest.param(b"not json at all", id="not-json"),
        pytest.param(b"[]", id="a-list"),
        pytest.param(b'{"object": "event"}', id="no-id"),
        pytest.param(b'{"id": "evt_x"}', id="no-type"),
        pytest.param(body_of(too_long_id), id="id-too-long"),
        pytest.param(body_of(no_object), id="no-data-object"),
        pytest.param(body_of(text_created), id="created-not-a-number"),
        pytest.param(body_of(far_created), id="created-out-of-range"),
    ]


@pytest.mark.parametrize("body", _not_events())
async def test_a_signed_body_that_is_not_an_event_is_refused(
    http: httpx.AsyncClient, db: Sessions, body: bytes
) -> None:
    """Even correctly signed, a body the inbox cannot hold is a 400, never a 500 (which Stripe
    would retry for days)."""
    answer = await _post_raw(http, body, signature_header(body, WEBHOOK_SECRET))
    _assert_refused(answer)
    assert answer.json()["detail"] in (
        "the payload is not a JSON object",
        "the payload is not a Stripe event",
    )


async def test_copies_of_one_event_are_stored_once_and_all_acknowledged(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    """Against the real server: twice in a row, then ten copies at once (checklist 30)."""
    event = stripe_event("test.duplicated")
    first = await post_event(http, event, WEBHOOK_SECRET)
    again = await post_event(http, event, WEBHOOK_SECRET)
    together = await asyncio.gather(*(post_event(http, event, WEBHOOK_SECRET) for _ in range(10)))
    answers = [first, again, *together]
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
    assert [a.json()["duplicate"] for a in answers] == [False] + [True] * 11

    stored = await wait_until_handled(db, [event["id"]])
    assert stored[event["id"]].attempts == 1  # processed once, not once per copy


async def test_concurrent_first_deliveries_store_one_row(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    """Ten copies racing, none of them first by arrival: one insert wins, nine see it."""
    event = stripe_event("test.raced")
    answers = await asyncio.gather(*(post_event(http, event, WEBHOOK_SECRET) for _ in range(10)))
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    assert sorted(a.json()["duplicate"] for a in answers) == [False] + [True] * 9
    assert list(await stored_events(db, [event["id"]])) == [event["id"]]


async def test_an_unknown_event_type_is_stored_and_ignored(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    event = stripe_event("issuing_card.created", {"id": "ic_123", "object": "issuing.card"})
    answer = await post_event(http, event, WEBHOOK_SECRET)
    assert answer.status_code == 200, answer.text

    stored = (await wait_until_handled(db, [event["id"]]))[event["id"]]
    assert stored.status is EventStatus.IGNORED
    assert stored.type == "issuing_card.created"
    assert stored.payload == event
    assert stored.processed_at is not None
    assert stored.last_error is None
    assert stored.outcome == "issuing_card.created is not acted on"
