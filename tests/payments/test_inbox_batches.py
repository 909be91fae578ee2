"""The webhook inbox's group commit (docs/architecture.md §5.1): deliveries that arrive together
are stored in one transaction, copies of one event among them are stored once with the first to
arrive answered as new, and a batch whose commit fails is refused whole, with a 503 to every
delivery in it and none of its rows kept.

Deliveries started in one `asyncio.gather` all join the inbox before its first batch is written,
so they are one batch; over HTTP the app's process groups them as they come."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import text

from computebill.app import create_app
from computebill.config import Settings
from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import Sessions, database
from computebill.errors import PROBLEM_JSON, DependencyUnavailable
from computebill.payments.inbox import EventInbox
from computebill.state import app_state
from tests.support.database import own_database
from tests.support.http import serve
from tests.support.platform import Platform
from tests.support.stripe import (
    WEBHOOK_SECRET,
    post_event,
    stored_events,
    stripe_event,
    wait_until_handled,
    with_stripe,
)

# A constraint trigger deferred to COMMIT: the INSERT of a batch succeeds, and its COMMIT fails
# when the batch holds an event whose id says so, as a real commit-time failure would.
REFUSE_AT_COMMIT = [
    """
    CREATE FUNCTION refuse_poisoned_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.id LIKE 'evt_poisoned_%' THEN
            RAISE EXCEPTION 'event % refused at commit', NEW.id USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER refuse_poisoned_event AFTER INSERT ON stripe_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_poisoned_event()
    """,
]


@asynccontextmanager
async def app_inbox(settings: Settings) -> AsyncIterator[tuple[EventInbox, httpx.AsyncClient]]:
    """The inbox of an app served in this process (its lifespan running), and a client of it."""
    app = create_app(settings)
    clients = serve(app)
    http = await anext(clients)
    try:
        yield app_state(app).inbox, http
    finally:
        await anext(clients, None)  # the app's shutdown: the inbox is closed


@pytest.fixture
async def refusing_settings(
    settings: Settings, service_urls: tuple[str, str]
) -> AsyncIterator[Settings]:
    """Settings on a database of the test's own whose commits fail for a poisoned event."""
    async with own_database(settings, service_urls[0]) as own:
        async with database(own) as sessions, sessions() as session:
            for statement in REFUSE_AT_COMMIT:
                await session.execute(text(statement))
            await session.commit()
        # Stripe itself is never called: only webhooks arrive.
        yield with_stripe(own, api_base=f"http://127.0.0.1:{free_port()}")


def _poisoned() -> dict[str, object]:
    event = stripe_event("customer.created")
    return event | {"id": str(event["id"]).replace("evt_", "evt_poisoned_")}


async def test_copies_in_one_batch_are_stored_once_and_the_first_to_arrive_is_new(
    platform: Platform, db: Sessions
) -> None:
    earlier, first, second, third = (stripe_event("customer.created") for _ in range(4))
    async with app_inbox(platform.app_settings) as (inbox, _):
        assert await inbox.store(earlier) is True
        arrivals = [first, second, first, earlier, third, first, second]
        answers = await asyncio.gather(*(inbox.store(event) for event in arrivals))
    assert answers == [True, True, False, False, True, False, False]

    events = {event["id"]: event for event in (earlier, first, second, third)}
    # Stored once each, as signed, and processed once: one job was sent per new event.
    handled = await wait_until_handled(db, events)
    assert {i: e.payload for i, e in handled.items()} == events
    assert all(e.attempts == 1 for e in handled.values())


async def test_concurrent_copies_among_other_deliveries_are_each_stored_once(
    http: httpx.AsyncClient, db: Sessions
) -> None:
    """Against the app's process: eight copies of each of four events, shuffled among
    twenty-four other events, all at once. Every delivery is acknowledged; exactly one
    delivery of each event is the new one."""
    copied = [stripe_event("customer.created") for _ in range(4)]
    arrivals = copied * 8 + [stripe_event("customer.created") for _ in range(24)]
    random.Random(14).shuffle(arrivals)
    answers = await asyncio.gather(*(post_event(http, e, WEBHOOK_SECRET) for e in arrivals))
    assert [a.status_code for a in answers] == [200] * len(arrivals), [a.text for a in answers]

    ids = {str(event["id"]) for event in arrivals}
    new = Counter(
        event["id"]
        for event, answer in zip(arrivals, answers, strict=True)
        if answer.json() == {"received": True, "duplicate": False}
    )
    assert new == dict.fromkeys(ids, 1)
    handled = await wait_until_handled(db, ids)
    assert all(e.attempts == 1 for e in handled.values())


async def test_a_batch_whose_commit_fails_is_refused_whole_and_stores_nothing(
    refusing_settings: Settings,
) -> None:
    good = [stripe_event("customer.created") for _ in range(5)]
    poisoned = _poisoned()
    arrivals = [*good[:3], poisoned, *good[3:], good[0]]
    ids = [str(event["id"]) for event in arrivals]
    async with database(refusing_settings) as db, app_inbox(refusing_settings) as (inbox, _):
        answers = await asyncio.gather(
            *(inbox.store(event) for event in arrivals), return_exceptions=True
        )
        for answer in answers:  # a 503 with Retry-After, like any database outage
            assert isinstance(answer, DependencyUnavailable), answer
            assert answer.status == 503
            assert answer.headers == {"Retry-After": "5"}
        assert await stored_events(db, ids) == {}

        # Delivered again without the poisoned one, as Stripe retries each: all of them stored.
        assert await asyncio.gather(*(inbox.store(event) for event in good)) == [True] * 5
        assert set(await stored_events(db, ids)) == {str(event["id"]) for event in good}


async def test_a_delivery_in_a_failed_batch_is_answered_503_over_http(
    refusing_settings: Settings,
) -> None:
    async with database(refusing_settings) as db, app_inbox(refusing_settings) as (_, http):
        poisoned = _poisoned()
        answer = await post_event(http, poisoned, WEBHOOK_SECRET)
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == PROBLEM_JSON
        assert answer.headers["retry-after"] == "5"
        assert answer.json()["code"] == "service_unavailable"

        # Among concurrent deliveries, each is acknowledged only if its batch committed: a
        # 200 has its row, a 503 (its batch held the poisoned one) has none.
        others = [stripe_event("customer.created") for _ in range(12)]
        arrivals = [*others[:6], poisoned, *others[6:]]
        answers = await asyncio.gather(*(post_event(http, e, WEBHOOK_SECRET) for e in arrivals))
        stored = await stored_events(db, [str(event["id"]) for event in arrivals])
        for event, answer in zip(arrivals, answers, strict=True):
            assert answer.status_code in (200, 503), answer.text
            assert (answer.status_code == 200) == (event["id"] in stored), event["id"]
        assert poisoned["id"] not in stored
