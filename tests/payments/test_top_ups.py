"""Credit top-ups: the wallet grows only when Stripe says the payment is paid, exactly once
whichever path gets there first (webhook, repeated or out of order, the success page,
reconciliation), and refunds and disputes take the credit back, even below zero."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.config import Settings
from computebill.credits import service as credits
from computebill.credits.models import CreditTopUp, EntryKind, TopUpStatus
from computebill.devserver.scratch import Sessions
from computebill.jobs import JobName, take_requested_jobs
from computebill.payments import checkout, events
from computebill.payments.gateway import StripeGateway
from tests.credits.ledger import add_user, post
from tests.payments.top_ups import deliver, emulator_event, open_top_up, top_up_entries
from tests.support.shopper import pay
from tests.support.stripe import EmulatorProcess, payment_terms, with_stripe

AMOUNT = 2500  # $25.00
CREDITED = AMOUNT * 1000


@pytest.fixture(scope="module")
def gateway(settings: Settings, checkout_emulator: EmulatorProcess) -> StripeGateway:
    return StripeGateway(
        with_stripe(settings, api_base=checkout_emulator.base_url, webhook_secret=None)
    )


@pytest.fixture
async def redis_store(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    assert settings.redis_url is not None
    store = aioredis.Redis.from_url(settings.redis_url)
    yield store
    await store.aclose()


async def _paid_top_up(db: AsyncSession, gateway: StripeGateway) -> tuple[uuid.UUID, CreditTopUp]:
    user_id = await add_user(db)
    top_up = await open_top_up(db, gateway, user_id, AMOUNT)
    assert top_up.checkout_url is not None
    assert (await pay(top_up.checkout_url)).status_code == 303
    return user_id, top_up


async def _success_page(
    db: AsyncSession,
    gateway: StripeGateway,
    store: aioredis.Redis,
    settings: Settings,
    user_id: uuid.UUID,
    session_id: str,
) -> TopUpStatus:
    """What the top-up's success page shows (it asks Stripe on its first look)."""
    shown = await checkout.confirm_checkout(
        db,
        gateway,
        store,
        CreditTopUp,
        namespace=settings.redis_namespace,
        user_id=user_id,
        session_id=session_id,
        terms=payment_terms(),
        now=datetime.now(UTC),
    )
    return shown.status


def _about_session(session_id: str | None) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: obj.get("id") == session_id


async def test_the_session_is_one_compute_credit_line_priced_by_the_server(
    db_session: AsyncSession, gateway: StripeGateway
) -> None:
    user_id = await add_user(db_session)
    top_up = await open_top_up(db_session, gateway, user_id, AMOUNT)
    assert top_up.checkout_session_id is not None
    session = await gateway.retrieve_checkout(top_up.checkout_session_id)
    assert (session["mode"], session["amount_total"], session["currency"]) == (
        "payment",
        AMOUNT,
        "usd",
    )
    assert session["metadata"] == {"top_up_id": str(top_up.id)}
    expanded = gateway.client.v1.checkout.sessions.retrieve(
        top_up.checkout_session_id, params={"expand": ["line_items"]}
    ).to_dict()
    assert [
        (i["description"], i["amount_total"], i["quantity"]) for i in expanded["line_items"]["data"]
    ] == [("Compute credit", AMOUNT, 1)]
    # A second top-up of the same user pays as the same Stripe Customer.
    again = await open_top_up(db_session, gateway, user_id, AMOUNT)
    assert again.checkout_session_id is not None
    second = await gateway.retrieve_checkout(again.checkout_session_id)
    assert second["customer"] == session["customer"] is not None
    assert await credits.balance(db_session, user_id) == 0  # nothing is credited before paying


async def test_a_paid_top_up_counts_once_whatever_repeats_or_comes_first(
    db_session: AsyncSession,
    gateway: StripeGateway,
    checkout_emulator: EmulatorProcess,
    redis_store: aioredis.Redis,
    settings: Settings,
) -> None:
    user_id, top_up = await _paid_top_up(db_session, gateway)
    session_id = top_up.checkout_session_id
    assert session_id is not None
    completed = emulator_event(
        checkout_emulator, "checkout.session.completed", _about_session(session_id)
    )
    # The same payment reported by another event type, as a bank debit's settling would be.
    succeeded = {**completed, "id": f"{completed['id']}_async"}
    succeeded["type"] = "checkout.session.async_payment_succeeded"

    # The success page gets there before any webhook: it asks Stripe, and credits.
    shown = await _success_page(db_session, gateway, redis_store, settings, user_id, session_id)
    assert shown is TopUpStatus.PAID
    assert await deliver(db_session, gateway, succeeded) == "top-up already paid"
    assert await deliver(db_session, gateway, completed) == "top-up already paid"
    assert await deliver(db_session, gateway, completed) == "top-up already paid"  # a redelivery
    assert (
        await events.reconcile_top_up(
            db_session, gateway, top_up.id, terms=payment_terms(), now=datetime.now(UTC)
        )
    ) == ("nothing to do")

    intent = (await gateway.retrieve_checkout(session_id))["payment_intent"]["id"]
    assert await top_up_entries(db_session, user_id) == [("top_up", CREDITED, f"top_up:{intent}")]
    assert await credits.balance(db_session, user_id) == CREDITED
    stored = await db_session.get(CreditTopUp, top_up.id, populate_existing=True)
    assert stored is not None
    assert (stored.status, stored.payment_intent_id) == (TopUpStatus.PAID, intent)
    assert await credits.verify_ledger(db_session) == []


async def test_the_webhook_credits_a_paid_top_up(
    db_session: AsyncSession, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, top_up = await _paid_top_up(db_session, gateway)
    completed = emulator_event(
        checkout_emulator, "checkout.session.completed", _about_session(top_up.checkout_session_id)
    )
    assert await deliver(db_session, gateway, completed) == "top-up credited"
    assert await deliver(db_session, gateway, completed) == "top-up credited"  # already processed
    assert await credits.balance(db_session, user_id) == CREDITED
    assert [kind for kind, _, _ in await top_up_entries(db_session, user_id)] == ["top_up"]


async def test_racing_deliveries_and_the_success_page_credit_once(
    db: Sessions,
    gateway: StripeGateway,
    checkout_emulator: EmulatorProcess,
    redis_store: aioredis.Redis,
    settings: Settings,
) -> None:
    """Each path in a transaction of its own, all at once: the top-up row's lock lets one
    credit, and the others find it paid."""
    async with db() as session, session.begin():
        user_id, top_up = await _paid_top_up(session, gateway)
    session_id = top_up.checkout_session_id
    assert session_id is not None
    completed = emulator_event(
        checkout_emulator, "checkout.session.completed", _about_session(session_id)
    )
    copies = [{**completed, "id": f"{completed['id']}_{n}"} for n in range(3)]

    async def webhook(event: dict[str, Any]) -> str:
        async with db() as session, session.begin():
            return await deliver(session, gateway, event)

    async def success_page() -> str:
        async with db() as session, session.begin():
            shown = await _success_page(
                session, gateway, redis_store, settings, user_id, session_id
            )
            return shown.value

    async def reconciliation() -> str:
        async with db() as session, session.begin():
            later = datetime.now(UTC) + timedelta(minutes=10)
            return await events.reconcile_top_up(
                session, gateway, top_up.id, terms=payment_terms(), now=later
            )

    outcomes = await asyncio.gather(*(webhook(c) for c in copies), success_page(), reconciliation())
    # The page asked Stripe (its first look at this top-up): paid, by itself or by a racer.
    assert outcomes[3] == "paid"
    assert sorted(outcomes[:3] + outcomes[4:]).count("top-up credited") <= 1
    async with db() as session:
        assert await credits.balance(session, user_id) == CREDITED
        assert [kind for kind, _, _ in await top_up_entries(session, user_id)] == ["top_up"]


async def test_an_expired_checkout_credits_nothing(
    db_session: AsyncSession, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id = await add_user(db_session)
    top_up = await open_top_up(db_session, gateway, user_id, AMOUNT)
    session_id = top_up.checkout_session_id
    assert session_id is not None
    checkout_emulator.client().v1.checkout.sessions.expire(session_id)
    expired = emulator_event(
        checkout_emulator, "checkout.session.expired", _about_session(session_id)
    )
    assert await deliver(db_session, gateway, expired) == "top-up expired"
    # A completion claimed for it later is checked against Stripe, and changes nothing.
    forged = {**expired, "id": f"{expired['id']}_late", "type": "checkout.session.completed"}
    forged["data"] = {"object": {**expired["data"]["object"], "payment_status": "paid"}}
    assert await deliver(db_session, gateway, forged) == "top-up already expired"
    assert await credits.balance(db_session, user_id) == 0
    assert await top_up_entries(db_session, user_id) == []


async def test_reconciliation_credits_a_paid_top_up_whose_webhook_was_lost(
    db_session: AsyncSession, gateway: StripeGateway
) -> None:
    user_id, top_up = await _paid_top_up(db_session, gateway)
    now = datetime.now(UTC)
    assert top_up.id not in await events.pending_top_ups_to_reconcile(db_session, now=now)
    later = now + events.RECONCILE_AFTER + timedelta(minutes=1)
    assert top_up.id in await events.pending_top_ups_to_reconcile(db_session, now=later)

    assert await events.reconcile_top_up(
        db_session, gateway, top_up.id, terms=payment_terms(), now=later
    ) == ("top-up credited")
    assert await events.reconcile_top_up(
        db_session, gateway, top_up.id, terms=payment_terms(), now=later
    ) == ("nothing to do")
    assert top_up.id not in await events.pending_top_ups_to_reconcile(db_session, now=later)
    assert await credits.balance(db_session, user_id) == CREDITED


async def test_refunds_take_back_what_they_refund_once_even_below_zero(
    db_session: AsyncSession, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, top_up = await _paid_top_up(db_session, gateway)
    session = await gateway.retrieve_checkout(str(top_up.checkout_session_id))
    intent = str(session["payment_intent"]["id"])

    # The refund's events come first: the payment is fulfilled, then the refund reversed.
    part = await gateway.refund(payment_intent_id=intent, amount_cents=1000, key=f"t-{intent}-1")

    def about_part(obj: dict[str, Any]) -> bool:
        return obj.get("id") == part

    created = emulator_event(checkout_emulator, "refund.created", about_part)
    assert await deliver(db_session, gateway, created) == "top-up reversal of 1000 posted"
    assert await deliver(db_session, gateway, {**created, "id": f"{created['id']}_again"}) == (
        "reversal top_up_reversal:" + part + " already posted"
    )
    refunded = emulator_event(
        checkout_emulator, "charge.refunded", lambda obj: obj.get("payment_intent") == intent
    )
    assert await deliver(db_session, gateway, refunded) == "top-up partially_refunded"
    assert await credits.balance(db_session, user_id) == (AMOUNT - 1000) * 1000

    # Credit spent, then the rest refunded: the balance goes below zero.
    await post(db_session, user_id, EntryKind.USAGE, -1_200_000)
    rest = await gateway.refund(payment_intent_id=intent, amount_cents=1500, key=f"t-{intent}-2")
    rest_created = emulator_event(checkout_emulator, "refund.created", lambda o: o["id"] == rest)
    take_requested_jobs(db_session)
    assert await deliver(db_session, gateway, rest_created) == "top-up reversal of 1500 posted"
    assert await credits.balance(db_session, user_id) == CREDITED - 2_500_000 - 1_200_000
    assert await credits.balance(db_session, user_id) < 0
    # Below zero: the account's cap is judged at once (its pay-as-you-go instances stop).
    assert (JobName.ENFORCE_CREDIT_CAP, (str(user_id),)) in [
        (job.name, job.args) for job in take_requested_jobs(db_session)
    ]

    entries = await top_up_entries(db_session, user_id)
    assert [(kind, amount) for kind, amount, _ in entries] == [
        ("top_up", CREDITED),
        ("top_up_reversal", -1_000_000),
        ("usage", -1_200_000),
        ("top_up_reversal", -1_500_000),
    ]
    assert entries[1][2] == f"top_up_reversal:{part}"
    stored = await db_session.get(CreditTopUp, top_up.id, populate_existing=True)
    assert stored is not None
    assert stored.refunded_cents == 1000
    assert await credits.verify_ledger(db_session) == []


async def test_a_dispute_takes_the_credit_back_once(
    db_session: AsyncSession, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, top_up = await _paid_top_up(db_session, gateway)
    session_id = str(top_up.checkout_session_id)
    intent = str((await gateway.retrieve_checkout(session_id))["payment_intent"]["id"])
    triggered = checkout_emulator.trigger("charge.dispute.created", session_id)
    assert triggered.returncode == 0, triggered.stderr
    dispute = emulator_event(
        checkout_emulator,
        "charge.dispute.created",
        lambda obj: obj.get("payment_intent") == intent,
    )
    dispute_id = dispute["data"]["object"]["id"]

    # Before the completion was applied: the payment is credited first, then disputed.
    assert await deliver(db_session, gateway, dispute) == f"top-up reversal of {AMOUNT} posted"
    again = {**dispute, "id": f"{dispute['id']}_again"}
    assert await deliver(db_session, gateway, again) == (
        f"reversal top_up_dispute:{dispute_id} already posted"
    )
    completed = emulator_event(
        checkout_emulator, "checkout.session.completed", _about_session(session_id)
    )
    assert await deliver(db_session, gateway, completed) == "top-up already disputed"

    assert await credits.balance(db_session, user_id) == 0
    assert [(k, a) for k, a, _ in await top_up_entries(db_session, user_id)] == [
        ("top_up", CREDITED),
        ("top_up_reversal", -CREDITED),
    ]
    stored = await db_session.get(CreditTopUp, top_up.id, populate_existing=True)
    assert stored is not None
    assert stored.status is TopUpStatus.DISPUTED
