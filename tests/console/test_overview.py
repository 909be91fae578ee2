"""The console's overview: exact figures for a known platform (a database of its own, so no other
test's orders count), the same in the JSON API and on the page; who may see it; the queue away."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.auth.service import Role
from computebill.config import Settings
from computebill.console import service
from computebill.console.api import queue_depth
from computebill.credits.models import CreditTopUp, EntryKind, TopUpStatus
from computebill.credits.service import post_entry
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.instances.models import Billing, Instance, InstanceStatus, InstanceStatusChange
from computebill.orders.models import Refund
from computebill.payments.models import EventStatus, StripeEvent
from computebill.queue.publisher import AppQueuePublisher, QueueUnavailable
from tests.console.operators import operator_browser
from tests.support.database import own_database
from tests.support.markup import elements
from tests.support.orders import add_paid_order
from tests.support.pages import Browser, browser_for

MODEL = "amd-mi355x"


@pytest.fixture(scope="module")
async def own_settings(
    settings: Settings, service_urls: tuple[str, str]
) -> AsyncIterator[Settings]:
    async with own_database(settings, service_urls[0]) as own:
        yield own


@pytest.fixture
async def own_browser(own_settings: Settings) -> AsyncIterator[Browser]:
    async for value in browser_for(own_settings):
        yield value


async def _customer(db: AsyncSession, now: datetime) -> uuid.UUID:
    user = User(email=f"c-{secrets.token_hex(4)}@example.com", password_changed_at=now)
    db.add(user)
    await db.flush()
    return user.id


def _instance(user_id: uuid.UUID, status: InstanceStatus, gpus: int, **times: Any) -> Instance:
    return Instance(
        user_id=user_id,
        billing=Billing.PAY_AS_YOU_GO,
        rate_millicents_per_hour=1000,
        index=0,
        name=f"box-{secrets.token_hex(3)}",
        gpu_slug=MODEL,
        gpu_name="AMD Instinct MI355X",
        gpu_count=gpus,
        vcpus=8,
        storage_gb=100,
        region="us-east-1",
        status=status,
        **times,
    )


async def _known_platform(settings: Settings, now: datetime) -> uuid.UUID:
    """Orders, refunds, top-ups, instances and events around `now`: the owner of the negative
    balance."""
    midnight = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            buyer, debtor = await _customer(db, now), await _customer(db, now)
            # Orders: $66.80 today (20 GPU-hours), $66.80 3 days ago (20, flagged for
            # review), $6.68 20 days ago (2), $668 40 days ago (outside every window).
            await add_paid_order(db, buyer, [(MODEL, 1, 10)], now=midnight)
            flagged = await add_paid_order(db, buyer, [(MODEL, 2, 5)], now=now - timedelta(days=3))
            flagged.needs_review = True
            small = await add_paid_order(db, buyer, [(MODEL, 1, 1)], now=now - timedelta(days=20))
            old = await add_paid_order(db, buyer, [(MODEL, 1, 100)], now=now - timedelta(days=40))
            for order, amount, at, status in (
                (small, 100, midnight, "succeeded"),
                (old, 200, now - timedelta(days=10), "succeeded"),
                (old, 999, now - timedelta(days=1), "failed"),  # gave nothing back
            ):
                db.add(
                    Refund(
                        order_id=order.id,
                        refund_id=f"re_{secrets.token_hex(8)}",
                        amount_cents=amount,
                        status=status,
                        created_at=at,
                    )
                )
            # Top-ups: $50 two days ago; $100 40 days ago, $30 of it refunded 5 days ago and
            # $10 disputed (a dispute is not a refund).
            for owner, amount, at, status in (
                (buyer, 5000, now - timedelta(days=2), TopUpStatus.PAID),
                (debtor, 10000, now - timedelta(days=40), TopUpStatus.DISPUTED),
            ):
                db.add(
                    CreditTopUp(
                        user_id=owner,
                        status=status,
                        amount_cents=amount,
                        currency="usd",
                        payment_intent_id=f"pi_{secrets.token_hex(8)}",
                        paid_at=at,
                    )
                )
            for key, cents in (("top_up_reversal:re_", 3000), ("top_up_dispute:dp_", 1000)):
                await post_entry(
                    db,
                    user_id=debtor,
                    kind=EntryKind.TOP_UP_REVERSAL,
                    amount_millicents=-cents * 1000,
                    idempotency_key=key + secrets.token_hex(8),
                    now=now - timedelta(days=5),
                )
            # Instances: 4 GPUs running since midnight, 2 GPUs that ran 3 hours 10 days ago,
            # a failed one, one provisioning for 2 hours (stuck), one stopping for 5 minutes.
            running = _instance(buyer, InstanceStatus.RUNNING, 4, started_at=midnight)
            ended = now - timedelta(days=10) + timedelta(hours=3)
            done = _instance(
                buyer,
                InstanceStatus.TERMINATED,
                2,
                started_at=now - timedelta(days=10),
                run_ended_at=ended,
                terminated_at=ended,
            )
            failed = _instance(buyer, InstanceStatus.FAILED, 1)
            stuck = _instance(buyer, InstanceStatus.PROVISIONING, 1)
            stopping = _instance(buyer, InstanceStatus.STOPPING, 1)
            db.add_all([running, done, failed, stuck, stopping])
            await db.flush()
            for instance, at in (
                (stuck, now - timedelta(hours=2)),
                (stopping, now - timedelta(minutes=5)),
            ):
                db.add(
                    InstanceStatusChange(
                        instance_id=instance.id,
                        from_status=None,
                        to_status=instance.status,
                        reason="test",
                        changed_at=at,
                    )
                )
            for status, received in (
                (EventStatus.FAILED, now - timedelta(days=2)),
                (EventStatus.PENDING, now - timedelta(seconds=600)),
                (EventStatus.PROCESSED, now - timedelta(days=9)),
            ):
                db.add(
                    StripeEvent(
                        id=f"evt_{secrets.token_hex(8)}",
                        type="checkout.session.completed",
                        created=received,
                        payload={},
                        received_at=received,
                        status=status,
                    )
                )
    finally:
        await engine.dispose()
    return debtor


async def test_the_overview_is_exact_for_a_known_platform(
    own_browser: Browser, own_settings: Settings
) -> None:
    await operator_browser(own_browser, own_settings, Role.SUPPORT)
    now = own_browser.clock.now()
    debtor = await _known_platform(own_settings, now)
    midnight = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
    today_seconds = int((now - midnight).total_seconds())

    engine = create_engine(own_settings)
    try:
        async with engine.connect() as db:
            figures = await service.overview(db, now=now)
    finally:
        await engine.dispose()

    revenue = {
        name: (r.orders_cents, r.top_ups_cents, r.refunds_cents, r.net_cents)
        for name, r in figures.revenue.items()
    }
    assert revenue == {
        "today": (6680, 0, 100, 6580),
        "last_7_days": (13360, 5000, 3100, 15260),
        "last_30_days": (14028, 5000, 3300, 15728),
    }
    assert figures.gpu_hours_sold == {"today": 20, "last_7_days": 40, "last_30_days": 42}
    assert figures.gpu_seconds_used == {
        "today": 4 * today_seconds,
        "last_7_days": 4 * today_seconds,
        "last_30_days": 4 * today_seconds + 2 * 3 * 3600,
    }
    assert [(m.gpu_slug, m.instances, m.gpus) for m in figures.active] == [(MODEL, 2, 5)]
    assert figures.problems == service.Problems(
        failed_events=1,
        orders_for_review=1,
        failed_instances=1,
        stuck_instances=1,
        negative_balances=1,
        oldest_pending_event_age_seconds=600,
    )
    assert [(a.user_id, a.balance_millicents) for a in figures.negative_accounts] == [
        (debtor, -4_000_000)
    ]

    # The JSON API and the page show the same figures.
    answer = await own_browser.http.get(
        "/api/v1/admin/overview", headers={"authorization": f"Bearer {own_browser.access_token}"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["revenue"]["last_7_days"]["net_cents"] == 15260
    assert body["gpu_seconds_used"]["last_30_days"] == 4 * today_seconds + 21600
    assert {p["key"]: p["count"] for p in body["problems"]} == {
        "failed_events": 1,
        "orders_for_review": 1,
        "failed_instances": 1,
        "stuck_instances": 1,
        "negative_balances": 1,
    }
    assert body["oldest_pending_event_age_seconds"] == 600
    assert body["queue"] is not None

    page = await own_browser.page("/admin")
    assert page.status_code == 200, page.text
    shown = {e.attrs["data-figure"]: e.text.strip() for e in elements(page.text, "data-figure")}
    assert shown["revenue-today"] == "$65.80"
    assert shown["revenue-last_7_days"] == "$152.60"
    assert shown["revenue-last_30_days"] == "$157.28"
    assert shown["problem-failed_events"] == "1"
    assert shown["problem-orders_for_review"] == "1"
    assert shown["oldest-pending-event"] == "600 s"
    links = set(re.findall(r'<a href="([^"]+)"', page.text))
    assert {
        "/admin/events?status=failed",
        "/admin/orders?review=1",
        "/admin/instances?status=failed",
        "/admin/jobs",
        f"/admin/customers/{debtor}",
    } <= links
    [model] = elements(page.text, "data-active-model")
    assert model.attrs["data-active-model"] == MODEL


class _AwayQueue:
    async def overview(self) -> None:
        raise QueueUnavailable("down")


async def test_the_overview_says_when_the_queue_is_away() -> None:
    away: Any = _AwayQueue()
    publisher: AppQueuePublisher = away
    assert await queue_depth(publisher) is None


async def test_anonymous_visitors_log_in_and_customers_are_refused(
    browser: Browser, email: str
) -> None:
    answer = await browser.page("/admin")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/admin"
    await browser.sign_up(email)
    assert (await browser.page("/admin")).status_code == 403
    api = await browser.http.get(
        "/api/v1/admin/overview", headers={"authorization": f"Bearer {browser.access_token}"}
    )
    assert api.status_code == 403
