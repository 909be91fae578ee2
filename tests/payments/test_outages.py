"""When Stripe, the database or Redis is away: clear answers, nothing lost, nothing done twice.

Each outage is an app in this process whose settings point one service at a closed port; the
rest (the database, the platform's worker) is the real thing, shared with the platform."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import Sessions
from computebill.errors import PROBLEM_JSON
from computebill.payments.models import EventStatus
from tests.support.http import in_process
from tests.support.orders import order_row
from tests.support.platform import Platform, grant_admin
from tests.support.shopper import Shopper, pay
from tests.support.stripe import (
    WEBHOOK_SECRET,
    post_event,
    stored_events,
    stripe_event,
    wait_until_handled,
    with_stripe,
)


def _closed_port() -> int:
    return free_port()  # free now: nothing listens there


async def _pending_order(http: httpx.AsyncClient) -> tuple[Shopper, str, str]:
    """A shopper with an order waiting for payment: (shopper, order id, session id)."""
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    order_id, _ = await shopper.checkout_url()
    return shopper, order_id, await shopper.session_id(order_id)


def _expired_event(session_id: str) -> dict[str, Any]:
    return stripe_event(
        "checkout.session.expired",
        {"id": session_id, "object": "checkout.session", "status": "expired"},
    )


@pytest.mark.parametrize("key", [None, "checkout-during-outage"])
async def test_when_stripe_is_down_checkout_answers_502_and_a_retry_opens_the_same_order(
    platform: Platform, http: httpx.AsyncClient, db: Sessions, key: str | None
) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add()
    stripe_down = with_stripe(platform.app_settings, api_base=f"http://127.0.0.1:{_closed_port()}")
    async with in_process(stripe_down) as app:  # same database and keys: the token is valid
        during = Shopper(app, email=shopper.email, token=shopper.token)
        answers = [await during.checkout(key=key) for _ in range(2)]

    for answer in answers:
        assert answer.status_code == 502, answer.text
        assert answer.headers["content-type"] == PROBLEM_JSON
        assert answer.headers["retry-after"].isdigit()
        assert answer.json()["code"] == "payment_provider_unavailable"
    [order] = (await shopper.orders()).json()["orders"]  # two attempts, one order
    assert (order["status"], order["checkout_url"]) == ("pending", None)
    noted = await order_row(db, order["id"])
    assert noted.checkout_error is not None
    assert noted.checkout_session_id is None

    retried = await shopper.checkout(key=key)  # Stripe is back (the platform's app)
    assert retried.status_code == 201, retried.text
    assert retried.json()["order_id"] == order["id"]
    assert (await order_row(db, order["id"])).checkout_error is None

    assert (await pay(retried.json()["checkout_url"])).status_code == 303
    paid = await shopper.wait_for(order["id"], "paid")
    assert [h["to_status"] for h in paid["history"]] == ["pending", "paid"]
    assert [o["id"] for o in (await shopper.orders()).json()["orders"]] == [order["id"]]


@pytest.mark.parametrize(
    ("stripe", "status", "code"),
    [
        ("not configured", 503, "payments_unavailable"),
        ("unreachable", 502, "payment_provider_unavailable"),
    ],
)
async def test_a_refund_while_stripe_is_off_or_away_is_a_problem_to_retry_and_changes_nothing(
    platform: Platform, http: httpx.AsyncClient, stripe: str, status: int, code: str
) -> None:
    buyer = await Shopper(http).sign_up()
    order_id, _ = await buyer.buy()
    admin = await Shopper(http).sign_up()
    await grant_admin(platform.settings, admin.email, http=http, access_token=admin.token)
    away = with_stripe(platform.app_settings, api_base=f"http://127.0.0.1:{_closed_port()}")
    if stripe == "not configured":
        away = away.model_copy(update={"stripe_secret_key": None})
    async with in_process(away) as app:
        answer = await Shopper(app, email=admin.email, token=admin.token).refund(order_id)

    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.headers["retry-after"].isdigit()
    assert answer.json()["code"] == code
    order = await buyer.order(order_id)
    assert (order["status"], order["refunded_cents"], order["refunds"]) == ("paid", 0, [])


async def test_when_the_database_is_down_the_webhook_answers_503_and_redelivery_acts_once(
    platform: Platform, http: httpx.AsyncClient, db: Sessions
) -> None:
    """Checklist 31: a non-2xx makes Stripe deliver again; the redelivery has one effect."""
    shopper, order_id, session_id = await _pending_order(http)
    event = _expired_event(session_id)
    database_down = platform.app_settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{_closed_port()}/computebill"}
    )
    async with in_process(database_down) as app:
        answer = await post_event(app, event, WEBHOOK_SECRET)
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert await stored_events(db, [event["id"]]) == {}

    redelivered = [await post_event(http, event, WEBHOOK_SECRET) for _ in range(2)]
    assert [a.status_code for a in redelivered] == [200, 200]
    await wait_until_handled(db, [event["id"]])
    order = await shopper.wait_for(order_id, "expired")
    assert [h["to_status"] for h in order["history"]] == ["pending", "expired"]


async def test_when_redis_is_down_the_webhook_still_answers_200_and_the_sweep_processes_it(
    platform: Platform, http: httpx.AsyncClient, db: Sessions
) -> None:
    """The event is committed before the 200; its job cannot be sent, so the worker's sweep
    (every second, for events older than two) finds it once Redis is reachable again."""
    shopper, order_id, session_id = await _pending_order(http)
    event = _expired_event(session_id)
    redis_down = platform.app_settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{_closed_port()}/0"}
    )
    async with in_process(redis_down) as app:
        started = time.monotonic()
        answer = await post_event(app, event, WEBHOOK_SECRET)
        assert answer.status_code == 200, answer.text
        # Within the sender's patience (the emulator's --webhook-timeout, like Stripe's, is 10 s).
        assert time.monotonic() - started < 8
        assert answer.json() == {"received": True, "duplicate": False}
        assert event["id"] in await stored_events(db, [event["id"]])  # committed before the 200

    handled = (await wait_until_handled(db, [event["id"]], within=15))[event["id"]]
    assert (handled.status, handled.attempts) == (EventStatus.PROCESSED, 1)
    assert handled.outcome == "order expired"
    # No job was sent for it: only the sweep, which waits EVENT_SWEEP_AFTER_SECONDS, ran it.
    assert handled.processed_at is not None
    assert handled.processed_at - handled.received_at >= timedelta(
        seconds=platform.app_settings.event_sweep_after_seconds
    )
    order = await shopper.wait_for(order_id, "expired", within=5)
    assert [h["to_status"] for h in order["history"]] == ["pending", "expired"]
