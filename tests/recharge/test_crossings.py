"""Auto-recharge's three steps against the database, with Stripe's answers given: one charge per
crossing however many checks run at once, the credit posted once whether the PaymentIntent's
answer or its webhook comes first, retries on the backoff, the pause, the monthly maximum, and
re-arming once the balance is back above the threshold."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from computebill.auth.models import User
from computebill.config import MailBackend, Settings
from computebill.credits import service as credits
from computebill.credits.models import CreditTopUp, EntryKind, TopUpSource, TopUpStatus
from computebill.devserver.scratch import Sessions
from computebill.instances import metering
from computebill.instances.models import Instance, InstanceStatus
from computebill.jobs import JobName, JobRequest, take_requested_jobs
from computebill.payments import events, recharge
from computebill.payments.gateway import ChargeOutcome, OffSessionCharge, StripeGateway
from computebill.payments.models import AttemptStatus, EventStatus, StripeEvent
from tests.credits.ledger import post
from tests.instances.metering import add_metered
from tests.recharge.accounts import (
    attempts,
    customer_with_card,
    emails_to,
    rule,
    top_up_credits,
    with_rule,
)
from tests.support.saved_cards import AMOUNT, THRESHOLD
from tests.support.stripe import payment_terms

DELAYS = (60, 600)
BELOW = 500_000  # $5.00, under the $10.00 threshold


@pytest.fixture(scope="module")
def sessions(private_sessions: Sessions) -> Sessions:
    """A database of the module's own (see `private_sessions`)."""
    return private_sessions


def _now() -> datetime:
    return datetime.now(UTC)


async def _begin(
    sessions: Sessions, user_id: uuid.UUID, *, at: datetime | None = None
) -> tuple[recharge.PlannedCharge | None, list[JobRequest]]:
    """One check's step A in a transaction of its own, and the jobs it asked for."""
    async with sessions() as db:
        planned = await recharge.begin_charge(db, user_id, now=at or _now())
        await db.commit()
        return planned, take_requested_jobs(db)


async def _begun(sessions: Sessions) -> tuple[uuid.UUID, recharge.PlannedCharge]:
    """A user $5 under an enabled rule's threshold, and the charge a check began (step A)."""
    user_id = await customer_with_card(sessions)
    await with_rule(sessions, user_id, balance_millicents=BELOW)
    planned, _ = await _begin(sessions, user_id)
    assert planned is not None
    return user_id, planned


async def _settle(
    sessions: Sessions, planned: recharge.PlannedCharge, outcome: OffSessionCharge
) -> tuple[str, list[JobRequest]]:
    async with sessions() as db:
        text = await recharge.settle_planned(
            db, planned, outcome, terms=payment_terms(DELAYS), now=_now()
        )
        await db.commit()
        return text, take_requested_jobs(db)


def _succeeded(planned: recharge.PlannedCharge, intent: str) -> OffSessionCharge:
    return OffSessionCharge(
        outcome=ChargeOutcome.SUCCEEDED,
        payment_intent_id=intent,
        amount_cents=planned.amount_cents,
        currency=planned.currency,
    )


def _declined(
    code: str = "card_declined", decline: str | None = "generic_decline"
) -> OffSessionCharge:
    return OffSessionCharge(
        outcome=ChargeOutcome.FAILED,
        payment_intent_id=f"pi_{secrets.token_hex(8)}",
        failure_code=code,
        decline_code=decline,
        failure_message="Your card was declined.",
    )


async def _webhook(
    sessions: Sessions, settings: Settings, event_type: str, intent: dict[str, Any]
) -> str:
    """A PaymentIntent event stored in the inbox and processed as the worker's job does."""
    event_id = f"evt_{secrets.token_hex(8)}"
    async with sessions() as db:
        db.add(
            StripeEvent(
                id=event_id,
                type=event_type,
                created=_now(),
                payload={
                    "id": event_id,
                    "type": event_type,
                    "created": int(_now().timestamp()),
                    "data": {"object": intent},
                },
                received_at=_now(),
                status=EventStatus.PENDING,
                attempts=0,
            )
        )
        await db.commit()
    async with sessions() as db:
        await events.process_event(
            db, StripeGateway(settings), event_id, now=_now(), terms=payment_terms(DELAYS)
        )
        await db.commit()
        stored = await db.get(StripeEvent, event_id)
        assert stored is not None
        assert stored.outcome is not None
        return stored.outcome


def _intent(planned: recharge.PlannedCharge, intent: str, status: str) -> dict[str, Any]:
    return {
        "id": intent,
        "object": "payment_intent",
        "amount": planned.amount_cents,
        "currency": planned.currency,
        "status": status,
        "metadata": {"top_up_id": str(planned.top_up_id), "user_id": str(planned.user_id)},
    }


async def test_ten_checks_at_once_begin_one_charge_and_a_retried_check_none(
    sessions: Sessions,
) -> None:
    user_id = await customer_with_card(sessions)
    await with_rule(sessions, user_id, balance_millicents=BELOW)
    async with sessions() as db:
        assert user_id in (await recharge.candidates(db, now=_now())).due

    begun = await asyncio.gather(*(_begin(sessions, user_id) for _ in range(10)))

    planned = [charge for charge, _ in begun if charge is not None]
    assert len(planned) == 1
    assert planned[0].idempotency_key == f"recharge:{user_id}:1"
    assert planned[0].amount_cents == AMOUNT
    made = await attempts(sessions, user_id)
    assert [(a.crossing, a.attempt, a.status) for a in made] == [(1, 1, AttemptStatus.PENDING)]
    state = await rule(sessions, user_id)
    assert (state.crossings, state.armed, state.in_flight_top_up_id) == (
        1,
        False,
        planned[0].top_up_id,
    )
    async with sessions() as db:
        top_up = await db.get(CreditTopUp, planned[0].top_up_id)
        assert top_up is not None
        assert (top_up.source, top_up.status, top_up.checkout_session_id) == (
            TopUpSource.AUTO_RECHARGE,
            TopUpStatus.PENDING,
            None,
        )
        # With a charge in flight, the check no longer considers it.
        assert user_id not in (await recharge.candidates(db, now=_now())).due
    assert (await _begin(sessions, user_id))[0] is None
    assert len(await attempts(sessions, user_id)) == 1


async def _verified_at(sessions: Sessions, user_id: uuid.UUID, at: datetime | None) -> None:
    """The account's address verified at `at`; None: not verified (as a change of address
    leaves it)."""
    async with sessions() as db:
        await db.execute(update(User).where(User.id == user_id).values(email_verified_at=at))
        await db.commit()


async def test_an_unverified_address_is_not_charged_and_its_rule_waits_as_it_is(
    sessions: Sessions,
) -> None:
    """Auto-recharge buys, and buying waits for a verified address: the check passes such an
    account by quietly (no charge, no attempt, no e-mail, no failure or pause), and charges the
    crossing once the address is verified."""
    user_id = await customer_with_card(sessions)
    await with_rule(sessions, user_id, balance_millicents=BELOW)
    await _verified_at(sessions, user_id, None)
    async with sessions() as db:
        assert user_id not in (await recharge.candidates(db, now=_now())).due

    planned, requested = await _begin(sessions, user_id)  # a check that read it just before

    assert (planned, requested) == (None, [])
    assert await attempts(sessions, user_id) == []
    assert await emails_to(sessions, user_id) == []
    state = await rule(sessions, user_id)
    assert (
        state.enabled,
        state.armed,
        state.crossings,
        state.consecutive_failures,
        state.paused_reason,
        state.in_flight_top_up_id,
    ) == (True, True, 0, 0, None, None)

    await _verified_at(sessions, user_id, _now())
    async with sessions() as db:
        assert user_id in (await recharge.candidates(db, now=_now())).due
    planned, _ = await _begin(sessions, user_id)
    assert planned is not None
    assert planned.idempotency_key == f"recharge:{user_id}:1"


async def test_ten_settlement_passes_crossing_the_threshold_at_once_begin_one_charge(
    sessions: Sessions,
) -> None:
    """A running pay-as-you-go instance takes the balance from a cent above the threshold to
    under it; ten settlement passes, each followed by the check it asks for, run at once."""
    user_id = await customer_with_card(sessions)
    await with_rule(sessions, user_id, balance_millicents=THRESHOLD * 1000 + 1000)
    started = _now() - timedelta(seconds=10)  # 10 s at $36 an hour: 10 cents
    async with sessions() as db:
        instance = await add_metered(db, user_id, rate=36 * 100_000, started_at=started)
        await db.commit()

    async def settlement_pass_then_check() -> tuple[int, recharge.PlannedCharge | None]:
        async with sessions() as db:
            settled = await metering.settle_all(db, now=started + timedelta(seconds=10))
            await db.commit()
        planned, _ = await _begin(sessions, user_id)
        return settled.charges.get(user_id, 0), planned

    try:
        begun = await asyncio.gather(*(settlement_pass_then_check() for _ in range(10)))
        # One pass charged the 10 s (the others found them locked or already settled) ...
        assert sorted(charged for charged, _ in begun)[-2:] == [0, 10_000]
        # ... and of the ten checks after them, one began a charge.
        planned = [charge for _, charge in begun if charge is not None]
        assert len(planned) == 1, planned
        assert planned[0].idempotency_key == f"recharge:{user_id}:1"
        assert len(await attempts(sessions, user_id)) == 1
        async with sessions() as db:
            assert await credits.balance(db, user_id) == THRESHOLD * 1000 + 1000 - 10_000
    finally:  # stop it burning, so later tests' passes leave it alone
        async with sessions() as db:
            stopped = await db.get(Instance, instance.id)
            assert stopped is not None
            stopped.status = InstanceStatus.TERMINATED
            await db.commit()


async def test_the_answer_then_the_webhook_credit_once_and_the_rule_rearms(
    sessions: Sessions, settings: Settings
) -> None:
    user_id, planned = await _begun(sessions)
    intent = f"pi_{secrets.token_hex(8)}"

    assert (await _settle(sessions, planned, _succeeded(planned, intent)))[0] == (
        "auto-recharge credited"
    )
    outcome = await _webhook(
        sessions, settings, "payment_intent.succeeded", _intent(planned, intent, "succeeded")
    )

    assert outcome == "attempt already succeeded"
    assert await top_up_credits(sessions, user_id) == [(AMOUNT * 1000, f"top_up:{intent}")]
    (attempt,) = await attempts(sessions, user_id)
    assert (attempt.status, attempt.payment_intent_id) == (AttemptStatus.SUCCEEDED, intent)
    state = await rule(sessions, user_id)
    assert (state.in_flight_top_up_id, state.armed, state.consecutive_failures) == (
        None,
        False,
        0,
    )
    # $5 + $25 is above the $10 threshold: the next check re-arms the rule, and charges nothing.
    async with sessions() as db:
        found = await recharge.candidates(db, now=_now())
        assert (user_id in found.due, user_id in found.to_rearm) == (False, True)
        assert await recharge.rearm(db, user_id, now=_now())
        await db.commit()
    assert (await rule(sessions, user_id)).armed


async def test_the_webhook_before_the_answer_credits_once(
    sessions: Sessions, settings: Settings
) -> None:
    user_id, planned = await _begun(sessions)
    intent = f"pi_{secrets.token_hex(8)}"

    # The top-up does not know its PaymentIntent yet: the metadata's top_up_id finds it.
    outcome = await _webhook(
        sessions, settings, "payment_intent.succeeded", _intent(planned, intent, "succeeded")
    )
    assert outcome == "auto-recharge credited"
    assert (await _settle(sessions, planned, _succeeded(planned, intent)))[0] == (
        "attempt already succeeded"
    )

    assert await top_up_credits(sessions, user_id) == [(AMOUNT * 1000, f"top_up:{intent}")]
    assert (await rule(sessions, user_id)).in_flight_top_up_id is None


async def test_a_payment_intent_event_of_another_user_credits_nothing(
    sessions: Sessions, settings: Settings
) -> None:
    user_id, planned = await _begun(sessions)
    forged = _intent(planned, f"pi_{secrets.token_hex(8)}", "succeeded")
    forged["metadata"]["user_id"] = str(uuid.uuid4())

    outcome = await _webhook(sessions, settings, "payment_intent.succeeded", forged)

    assert outcome == "payment does not match its top-up: alerted"
    assert await top_up_credits(sessions, user_id) == []


async def test_declines_retry_on_the_backoff_with_keys_of_their_own_then_pause(
    sessions: Sessions,
) -> None:
    user_id = await customer_with_card(sessions)
    await with_rule(sessions, user_id, balance_millicents=BELOW)
    at = _now()
    keys, requested = [], []
    for failure in range(1, 4):
        planned, _ = await _begin(sessions, user_id, at=at)
        assert planned is not None
        keys.append(planned.idempotency_key)
        text, jobs = await _settle(sessions, planned, _declined(decline="insufficient_funds"))
        assert text == "auto-recharge failed: card_declined"
        requested += jobs
        state = await rule(sessions, user_id)
        assert state.consecutive_failures == failure
        assert state.in_flight_top_up_id is None
        assert state.next_attempt_at is not None
        if failure < 3:
            assert state.paused_reason is None
            # Not again before the wait is over; then the same crossing is tried again.
            assert (await _begin(sessions, user_id, at=at))[0] is None
            at = state.next_attempt_at + timedelta(seconds=1)

    assert keys == [
        f"recharge:{user_id}:1",
        f"recharge:{user_id}:1:2",
        f"recharge:{user_id}:1:3",
    ]
    made = await attempts(sessions, user_id)
    assert [(a.crossing, a.attempt, a.status) for a in made] == [
        (1, n, AttemptStatus.FAILED) for n in (1, 2, 3)
    ]
    assert all(
        (a.failure_code, a.decline_code) == ("card_declined", "insufficient_funds") for a in made
    )
    state = await rule(sessions, user_id)
    assert state.paused_reason is not None
    assert "3 failed charges" in state.paused_reason
    assert (await _begin(sessions, user_id, at=at + timedelta(days=1)))[0] is None
    assert [(job.name, job.args) for job in requested] == [
        (JobName.SEND_AUTO_RECHARGE_EMAIL, (str(user_id), f"{kind}:{a.id}"))
        for kind, a in zip(("failed", "failed", "paused"), made, strict=True)
    ]
    async with sessions() as db:
        for job in requested + requested:  # each job twice: each e-mail once
            user, about = job.args
            assert isinstance(user, str)
            assert isinstance(about, str)
            await recharge.send_auto_recharge_email(
                db,
                uuid.UUID(user),
                about,
                backend=MailBackend.OUTBOX,
                public_base_url="https://gpu.example",
                now=_now(),
            )
        await db.commit()
    sent = await emails_to(sessions, user_id)
    assert [email.dedupe_key for email in sent] == [
        f"auto_recharge_{kind}:{a.id}"
        for kind, a in zip(("failed", "failed", "paused"), made, strict=True)
    ]
    assert all("Your card was declined." in email.body for email in sent)


async def test_authentication_required_pauses_at_once_and_links_to_the_top_up_form(
    sessions: Sessions,
) -> None:
    user_id, planned = await _begun(sessions)

    _, jobs = await _settle(
        sessions, planned, _declined("authentication_required", "authentication_required")
    )

    state = await rule(sessions, user_id)
    assert state.paused_reason is not None
    assert state.consecutive_failures == 1
    (attempt,) = await attempts(sessions, user_id)
    assert [job.args for job in jobs] == [(str(user_id), f"authentication:{attempt.id}")]
    async with sessions() as db:
        await recharge.send_auto_recharge_email(
            db,
            user_id,
            f"authentication:{attempt.id}",
            backend=MailBackend.OUTBOX,
            public_base_url="https://gpu.example/",
            now=_now(),
        )
        await db.commit()
    (email,) = await emails_to(sessions, user_id)
    assert email.dedupe_key == f"auto_recharge_authentication:{attempt.id}"
    assert "https://gpu.example/billing#top-up" in email.body


async def test_the_monthly_maximum_stops_a_second_charge_and_says_so_once(
    sessions: Sessions,
) -> None:
    user_id = await customer_with_card(sessions)
    await with_rule(sessions, user_id, balance_millicents=BELOW, monthly_max_cents=4000)
    planned, _ = await _begin(sessions, user_id)
    assert planned is not None
    await _settle(sessions, planned, _succeeded(planned, f"pi_{secrets.token_hex(8)}"))
    async with sessions() as db:
        assert await recharge.rearm(db, user_id, now=_now())
        # Spent down below the threshold again: a second crossing.
        await post(db, user_id, EntryKind.ADJUSTMENT, -2_600_000, reason="test")
        await db.commit()

    second, jobs = await _begin(sessions, user_id)
    third, more = await _begin(sessions, user_id)

    month = _now().strftime("%Y-%m")
    assert (second, third) == (None, None)
    assert [(job.name, job.args) for job in jobs] == [
        (JobName.SEND_AUTO_RECHARGE_EMAIL, (str(user_id), f"monthly_max:{month}"))
    ]
    assert more == []
    assert len(await attempts(sessions, user_id)) == 1
    assert (await rule(sessions, user_id)).armed


async def test_a_failure_told_by_the_webhook_then_the_answer_counts_once(
    sessions: Sessions, settings: Settings
) -> None:
    user_id, planned = await _begun(sessions)
    declined = _declined(decline="insufficient_funds")
    assert declined.payment_intent_id is not None
    failed = _intent(planned, declined.payment_intent_id, "requires_payment_method")
    failed["last_payment_error"] = {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    }

    outcome = await _webhook(sessions, settings, "payment_intent.payment_failed", failed)
    text, jobs = await _settle(sessions, planned, declined)

    assert outcome == "auto-recharge failed: card_declined"
    assert text == "attempt already failed"
    assert jobs == []
    (attempt,) = await attempts(sessions, user_id)
    assert (attempt.status, attempt.decline_code, attempt.failure_message) == (
        AttemptStatus.FAILED,
        "insufficient_funds",
        "Your card has insufficient funds.",
    )
    assert attempt.payment_intent_id == declined.payment_intent_id
    state = await rule(sessions, user_id)
    assert (state.consecutive_failures, state.in_flight_top_up_id) == (1, None)
    assert state.next_attempt_at is not None
    async with sessions() as db:
        top_up = await db.get(CreditTopUp, planned.top_up_id)
    assert top_up is not None
    assert top_up.status is TopUpStatus.PAYMENT_FAILED
    assert await top_up_credits(sessions, user_id) == []
