"""Auto-recharge against the Stripe emulator over HTTP, with the official SDK: each test card
charged off-session (4242 succeeds, 0341 attaches and declines, 3184 needs the customer), the
PaymentIntent's webhook before or after its own answer, concurrent checks and a repeated charge
making one PaymentIntent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from computebill.credits import service as credits
from computebill.devserver.scratch import Sessions
from computebill.invoices.models import Invoice
from computebill.payments import cards, recharge
from computebill.payments.gateway import ChargeOutcome, StripeGateway
from computebill.payments.models import AttemptStatus, PaymentMethod
from tests.payments.top_ups import deliver, emulator_event
from tests.recharge.accounts import attempts, rule, top_up_credits
from tests.support.saved_cards import (
    AMOUNT,
    account_with_card,
    enabled_rule,
    intents_of,
    save_test_card,
)
from tests.support.stripe import EmulatorProcess, payment_terms

DELAYS = (60,)
BELOW = 500_000  # $5.00, under the $10.00 threshold


@pytest.fixture(scope="module")
def sessions(private_sessions: Sessions) -> Sessions:
    """A database of the module's own (see `private_sessions`)."""
    return private_sessions


def _now() -> datetime:
    return datetime.now(UTC)


async def _below_threshold(
    sessions: Sessions, gateway: StripeGateway, emulator: EmulatorProcess, token: str
) -> tuple[uuid.UUID, str]:
    """A user with the test card `token` saved and an enabled rule, $5 under its threshold."""
    user_id, customer_id = await account_with_card(
        sessions, gateway, emulator, token, balance_millicents=BELOW
    )
    async with sessions() as db:
        db.add(enabled_rule(user_id))
        await db.commit()
    customer = await asyncio.to_thread(emulator.client().v1.customers.retrieve, customer_id)
    assert customer.to_dict()["invoice_settings"]["default_payment_method"] is not None
    return user_id, customer_id


async def _check(
    sessions: Sessions, gateway: StripeGateway, user_id: uuid.UUID, *, at: datetime | None = None
) -> str | None:
    """One whole check of the account at `at` (default: now), as the `check_auto_recharge` job
    runs it: step A in a transaction, step B with none, step C in another."""
    at = at or _now()
    async with sessions() as db:
        planned = await recharge.begin_charge(db, user_id, now=at)
        await db.commit()
    if planned is None:
        return None
    outcome = await recharge.charge(gateway, planned)
    assert outcome is not None
    async with sessions() as db:
        text = await recharge.settle_planned(
            db, planned, outcome, terms=payment_terms(DELAYS), now=at
        )
        await db.commit()
    return text


async def _balance(sessions: Sessions, user_id: uuid.UUID) -> int:
    async with sessions() as db:
        return await credits.balance(db, user_id)


async def test_4242_is_charged_once_and_the_balance_rises_by_exactly_the_amount(
    sessions: Sessions, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, customer_id = await _below_threshold(
        sessions, gateway, checkout_emulator, "pm_card_visa"
    )

    assert await _check(sessions, gateway, user_id) == "auto-recharge credited"

    (intent,) = await intents_of(checkout_emulator, customer_id)
    assert await _balance(sessions, user_id) == BELOW + AMOUNT * 1000
    assert await top_up_credits(sessions, user_id) == [(AMOUNT * 1000, f"top_up:{intent}")]
    (attempt,) = await attempts(sessions, user_id)
    assert (attempt.status, attempt.payment_intent_id) == (AttemptStatus.SUCCEEDED, intent)
    # Its webhook comes after the answer: nothing more is credited.
    event = emulator_event(
        checkout_emulator, "payment_intent.succeeded", lambda obj: obj["id"] == intent
    )
    async with sessions() as db:
        assert await deliver(db, gateway, event) == "attempt already succeeded"
        await db.commit()
    assert await _balance(sessions, user_id) == BELOW + AMOUNT * 1000
    # One invoice, as for a top-up paid on Stripe's page, naming the saved card.
    async with sessions() as db:
        (invoice,) = await db.scalars(select(Invoice).where(Invoice.top_up_id == attempt.top_up_id))
        assert (invoice.total_cents, invoice.payment_intent_id) == (AMOUNT, intent)
        assert invoice.payment_method == "Visa •••• 4242"
        assert invoice.number.startswith(f"CB-{invoice.issued_at.year}-")


async def test_the_webhook_before_the_answer_credits_once(
    sessions: Sessions, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, _ = await _below_threshold(sessions, gateway, checkout_emulator, "pm_card_visa")
    async with sessions() as db:
        planned = await recharge.begin_charge(db, user_id, now=_now())
        await db.commit()
    assert planned is not None
    outcome = await recharge.charge(gateway, planned)
    assert outcome is not None
    assert outcome.payment_intent_id is not None

    # The webhook is processed before step C records the PaymentIntent on the top-up.
    event = emulator_event(
        checkout_emulator,
        "payment_intent.succeeded",
        lambda obj: obj["id"] == outcome.payment_intent_id,
    )
    async with sessions() as db:
        assert await deliver(db, gateway, event) == "auto-recharge credited"
        await db.commit()
    async with sessions() as db:
        settled = await recharge.settle_planned(
            db, planned, outcome, terms=payment_terms(DELAYS), now=_now()
        )
        await db.commit()

    assert settled == "attempt already succeeded"
    assert await _balance(sessions, user_id) == BELOW + AMOUNT * 1000
    assert len(await top_up_credits(sessions, user_id)) == 1
    assert (await rule(sessions, user_id)).in_flight_top_up_id is None


async def test_0341_attaches_then_declines_retries_on_the_backoff_and_pauses_after_three(
    sessions: Sessions, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, customer_id = await _below_threshold(
        sessions, gateway, checkout_emulator, "pm_card_chargeCustomerFail"
    )
    at = _now()
    for _ in range(3):
        assert await _check(sessions, gateway, user_id, at=at) == (
            "auto-recharge failed: card_declined"
        )
        state = await rule(sessions, user_id)
        assert state.next_attempt_at is not None
        assert await _check(sessions, gateway, user_id, at=at) is None  # waiting
        at = state.next_attempt_at + timedelta(seconds=1)

    made = await attempts(sessions, user_id)
    assert [(a.attempt, a.status, a.failure_code) for a in made] == [
        (n, AttemptStatus.FAILED, "card_declined") for n in (1, 2, 3)
    ]
    assert all(a.failure_message for a in made)
    assert len(await intents_of(checkout_emulator, customer_id)) == 3
    state = await rule(sessions, user_id)
    assert state.paused_reason is not None
    assert await _check(sessions, gateway, user_id, at=at + timedelta(days=1)) is None
    assert await _balance(sessions, user_id) == BELOW


async def test_3184_needs_the_customer_so_the_rule_pauses_at_once(
    sessions: Sessions, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, _ = await _below_threshold(
        sessions, gateway, checkout_emulator, "pm_card_authenticationRequired"
    )

    assert await _check(sessions, gateway, user_id) == (
        "auto-recharge failed: authentication_required"
    )

    (attempt,) = await attempts(sessions, user_id)
    assert attempt.failure_code == "authentication_required"
    state = await rule(sessions, user_id)
    assert state.paused_reason is not None
    assert "billing page" in state.paused_reason
    assert await _balance(sessions, user_id) == BELOW


async def test_ten_concurrent_checks_and_a_repeated_charge_make_one_payment_intent(
    sessions: Sessions, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, customer_id = await _below_threshold(
        sessions, gateway, checkout_emulator, "pm_card_visa"
    )

    answers = await asyncio.gather(*(_check(sessions, gateway, user_id) for _ in range(10)))

    assert (
        sorted(answers, key=lambda answer: answer is None)
        == ["auto-recharge credited"] + [None] * 9
    )
    (intent,) = await intents_of(checkout_emulator, customer_id)
    (attempt,) = await attempts(sessions, user_id)
    # Reconciliation sends the same try again, with its key: Stripe answers the same intent.
    async with sessions() as db:
        assert await recharge.planned_again(db, attempt.id) is None  # finished: nothing to do
        method = await db.scalar(
            select(PaymentMethod.stripe_payment_method_id).where(PaymentMethod.user_id == user_id)
        )
    assert method is not None
    repeated = await gateway.charge_off_session(
        amount_cents=AMOUNT,
        currency="usd",
        customer_id=customer_id,
        payment_method_id=method,
        metadata={"top_up_id": str(attempt.top_up_id), "user_id": str(user_id)},
        idempotency_key=attempt.stripe_idempotency_key,
    )
    assert (repeated.outcome, repeated.payment_intent_id) == (ChargeOutcome.SUCCEEDED, intent)
    assert await intents_of(checkout_emulator, customer_id) == [intent]
    assert await _balance(sessions, user_id) == BELOW + AMOUNT * 1000


async def test_a_charge_left_unsettled_is_sent_again_as_planned_and_credited_once(
    sessions: Sessions, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, customer_id = await _below_threshold(
        sessions, gateway, checkout_emulator, "pm_card_visa"
    )
    async with sessions() as db:
        planned = await recharge.begin_charge(db, user_id, now=_now())
        await db.commit()
    assert planned is not None
    # Stripe charged, and the worker died before step C; then another card became the default.
    first = await recharge.charge(gateway, planned)
    assert first is not None
    await save_test_card(sessions, gateway, checkout_emulator, customer_id, "pm_card_mastercard")

    async with sessions() as db:
        stale = await recharge.stale_attempts(
            db, now=_now() + timedelta(minutes=6), older_than=timedelta(minutes=5)
        )
        assert planned.attempt_id in stale
        text = await recharge.recharge_again(
            db, gateway, planned.attempt_id, terms=payment_terms(DELAYS), now=_now()
        )
        await db.commit()

    assert text == "auto-recharge credited"
    assert await intents_of(checkout_emulator, customer_id) == [first.payment_intent_id]
    assert await _balance(sessions, user_id) == BELOW + AMOUNT * 1000
    async with sessions() as db:
        stale = await recharge.stale_attempts(
            db, now=_now() + timedelta(minutes=6), older_than=timedelta(minutes=5)
        )
    assert planned.attempt_id not in stale


async def test_a_card_detached_at_stripe_is_a_failed_charge_not_a_crash(
    sessions: Sessions, gateway: StripeGateway, checkout_emulator: EmulatorProcess
) -> None:
    user_id, _ = await _below_threshold(sessions, gateway, checkout_emulator, "pm_card_visa")
    async with sessions() as db:
        (card,) = await cards.list_cards(db, user_id)
    await asyncio.to_thread(
        checkout_emulator.client().v1.payment_methods.detach, card.stripe_payment_method_id
    )

    assert await _check(sessions, gateway, user_id) is not None

    (attempt,) = await attempts(sessions, user_id)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.payment_intent_id is None
    assert attempt.failure_message
    assert await _balance(sessions, user_id) == BELOW
