"""Auto-recharge: when an account's live balance falls below its rule's threshold, its default
card is charged the rule's amount off-session, exactly once per crossing (docs/architecture.md
§4, auto-recharge).

A charge is three steps, each its own transaction or none:

- A (`begin_charge`): the rule's row locked, everything re-checked; the crossing is counted, the
  rule disarmed, and a pending top-up and its attempt (with the Stripe idempotency key
  `recharge:<user>:<crossing>`, or `…:<attempt>` for a retry) written and committed. Whoever else
  checks at the same moment waits for the lock and finds the rule disarmed or a charge in flight.
- B (`charge`): Stripe is asked with no lock held. A refused card is an outcome; Stripe away
  leaves the attempt pending, and reconciliation sends the same key again (Stripe answers the
  same PaymentIntent: no second charge).
- C (`settle_charge`): the top-up locked, the outcome recorded once; a success credits the
  top-up through the one crediting path (`credits.credit_top_up`, ledger key
  `top_up:<payment intent>`), whether the answer, the webhook or reconciliation gets there first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.auth.models import User
from computebill.auth.service import email_verified, require_verified_email
from computebill.catalog.models import PricingPolicy
from computebill.config import MailBackend
from computebill.credits import service as credits
from computebill.credits.models import CreditTopUp, TopUpSource, TopUpStatus
from computebill.errors import AppError
from computebill.instances import metering
from computebill.invoices import service as invoices
from computebill.jobs import JobName, request_job
from computebill.mail.service import send_email
from computebill.money import MILLICENTS_PER_CENT, format_money
from computebill.payments.cards import card_named, customer_of, default_card
from computebill.payments.gateway import (
    ChargeOutcome,
    OffSessionCharge,
    PaymentProviderUnavailable,
    StripeGateway,
)
from computebill.payments.models import (
    AttemptStatus,
    AutoRechargeAttempt,
    AutoRechargeRule,
)
from computebill.payments.terms import PaymentTerms

log = structlog.get_logger(__name__)

# Failures in a row after which the rule pauses: a card refused three times will not pass.
MAX_CONSECUTIVE_FAILURES = 3
# How many rules the check judges per statement: few enough that each balance is read by its
# key; the check pages through them all.
CHECK_PAGE = 100
AUTHENTICATION_REQUIRED = "authentication_required"


# The rule ---------------------------------------------------------------------------------------


class AutoRechargeAmountOutOfRange(AppError):
    status = 422
    code = "auto_recharge_amount_out_of_range"


class MonthlyMaxBelowAmount(AppError):
    status = 422
    code = "auto_recharge_monthly_max_below_amount"


class NoSavedCard(AppError):
    status = 409
    code = "no_saved_card"


async def rule_of(db: AsyncSession | AsyncConnection, user_id: uuid.UUID) -> Row[Any] | None:
    """The user's rule (its columns), if they ever set one."""
    rows = await db.execute(
        select(*AutoRechargeRule.__table__.c).where(AutoRechargeRule.user_id == user_id)
    )
    return rows.first()


async def set_rule(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    enabled: bool,
    threshold_cents: int,
    amount_cents: int,
    monthly_max_cents: int | None,
    minimum_cents: int,
    maximum_cents: int,
) -> AutoRechargeRule:
    """Create or change the user's rule. An enabled rule buys, so it needs a verified address
    (403 `email_unverified`) and a saved card (409 `no_saved_card`); turning it off needs
    neither. Enabling a paused rule resumes it with its failures forgotten."""
    if enabled:
        await require_verified_email(db, user_id)
    credits.check_amount_in_range(
        amount_cents,
        minimum_cents=minimum_cents,
        maximum_cents=maximum_cents,
        refusal=AutoRechargeAmountOutOfRange,
        what="An auto-recharge",
    )
    if monthly_max_cents is not None and monthly_max_cents < amount_cents:
        raise MonthlyMaxBelowAmount(
            "The monthly maximum must allow at least one recharge of the amount.",
            errors=[
                {
                    "field": "body.monthly_max_cents",
                    "message": "must be at least amount_cents",
                    "type": "range",
                }
            ],
        )
    if enabled and await default_card(db, user_id) is None:
        raise NoSavedCard("Save a card first: auto-recharge charges your default card.")
    rule = await db.scalar(
        select(AutoRechargeRule)
        .where(AutoRechargeRule.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if rule is None:
        rule = AutoRechargeRule(
            user_id=user_id, armed=True, crossings=0, consecutive_failures=0, enabled=enabled
        )
        db.add(rule)
    if enabled:
        rule.paused_reason = None
        rule.consecutive_failures = 0
        rule.next_attempt_at = None
    rule.enabled = enabled
    rule.threshold_cents = threshold_cents
    rule.amount_cents = amount_cents
    rule.monthly_max_cents = monthly_max_cents
    await db.flush()
    return rule


async def recent_attempts(
    db: AsyncSession | AsyncConnection, user_id: uuid.UUID, *, limit: int = 20
) -> list[Row[Any]]:
    """The user's latest charges (their columns), the newest first."""
    rows = await db.execute(
        select(*AutoRechargeAttempt.__table__.c)
        .where(AutoRechargeAttempt.user_id == user_id)
        .order_by(AutoRechargeAttempt.created_at.desc(), AutoRechargeAttempt.attempt.desc())
        .limit(limit)
    )
    return list(rows)


# The check --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidates:
    due: list[uuid.UUID]  # below the threshold: a charge may begin
    to_rearm: list[uuid.UUID]  # disarmed and back at or above the threshold
    next_after: uuid.UUID | None  # where the next page starts; None: this was the last


def _month_start(now: datetime) -> datetime:
    moment = now.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


async def candidates(
    db: AsyncSession, *, now: datetime, after: uuid.UUID | None = None
) -> Candidates:
    """One page (CHECK_PAGE, by user id after `after`) of the enabled, unpaused rules with no
    charge in flight (the partial index `ix_auto_recharge_rules_active` serves it), judged by
    their accounts' live balances (one statement, a key lookup each). An account whose address
    is not verified is never due (one statement, a key lookup each): its rule waits, as it is,
    for the verification. Unlocked reads: `begin_charge` and `rearm` check again under the
    lock."""
    query = (
        select(
            AutoRechargeRule.user_id,
            AutoRechargeRule.armed,
            AutoRechargeRule.threshold_cents,
            AutoRechargeRule.consecutive_failures,
            AutoRechargeRule.next_attempt_at,
        )
        .where(
            AutoRechargeRule.enabled,
            AutoRechargeRule.paused_reason.is_(None),
            AutoRechargeRule.in_flight_top_up_id.is_(None),
        )
        .order_by(AutoRechargeRule.user_id)
        .limit(CHECK_PAGE)
    )
    if after is not None:
        query = query.where(AutoRechargeRule.user_id > after)
    rules = (await db.execute(query)).all()
    user_ids = [rule.user_id for rule in rules]
    live = await metering.live_balances(db, user_ids, now=now)
    verified = set(
        await db.scalars(
            select(User.id).where(User.id.in_(user_ids), User.email_verified_at.is_not(None))
        )
    )
    due, to_rearm = [], []
    for rule in rules:
        below = live[rule.user_id] < rule.threshold_cents * MILLICENTS_PER_CENT
        if (
            below
            and rule.user_id in verified
            and _may_charge(rule.armed, rule.consecutive_failures, rule.next_attempt_at, now)
        ):
            due.append(rule.user_id)
        elif not below and not rule.armed:
            to_rearm.append(rule.user_id)
    return Candidates(
        due=due,
        to_rearm=to_rearm,
        next_after=rules[-1].user_id if len(rules) == CHECK_PAGE else None,
    )


def _may_charge(
    armed: bool, consecutive_failures: int, next_attempt_at: datetime | None, now: datetime
) -> bool:
    """Armed (a new crossing), or disarmed by a charge that failed (its retry), once the retry's
    wait is over."""
    return (armed or consecutive_failures > 0) and (
        next_attempt_at is None or next_attempt_at <= now
    )


async def _lock_rule(db: AsyncSession, user_id: uuid.UUID) -> AutoRechargeRule | None:
    return await db.scalar(
        select(AutoRechargeRule)
        .where(AutoRechargeRule.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def rearm(db: AsyncSession, user_id: uuid.UUID, *, now: datetime) -> bool:
    """Arm the rule again if, under its lock, its account's live balance is at or above the
    threshold and no charge is in flight (the credit of the last crossing has landed)."""
    rule = await _lock_rule(db, user_id)
    if rule is None or rule.armed or rule.in_flight_top_up_id is not None:
        return False
    live = (await metering.live_balances(db, [user_id], now=now))[user_id]
    if live < rule.threshold_cents * MILLICENTS_PER_CENT:
        return False
    rule.armed = True
    return True


@dataclass(frozen=True, slots=True)
class PlannedCharge:
    """A charge step A committed: what step B sends to Stripe."""

    attempt_id: uuid.UUID
    top_up_id: uuid.UUID
    user_id: uuid.UUID
    amount_cents: int
    currency: str
    customer_id: str
    payment_method_id: str
    idempotency_key: str


def _stripe_key(user_id: uuid.UUID, crossing: int, attempt: int) -> str:
    """The first try of a crossing is `recharge:<user>:<crossing>`; a retry after a failure
    needs a key of its own (Stripe answers a reused key with its stored failure)."""
    base = f"recharge:{user_id}:{crossing}"
    return base if attempt == 1 else f"{base}:{attempt}"


async def succeeded_this_month(db: AsyncSession, user_id: uuid.UUID, *, now: datetime) -> int:
    """What the user's auto-recharges charged this UTC month, in cents."""
    total = await db.scalar(
        select(func.coalesce(func.sum(AutoRechargeAttempt.amount_cents), 0)).where(
            AutoRechargeAttempt.user_id == user_id,
            AutoRechargeAttempt.status == AttemptStatus.SUCCEEDED,
            AutoRechargeAttempt.created_at >= _month_start(now),
        )
    )
    return int(total or 0)


async def begin_charge(
    db: AsyncSession, user_id: uuid.UUID, *, now: datetime
) -> PlannedCharge | None:
    """Step A, with the rule's row locked: re-check the rule and the live balance; count the
    crossing (a new one when armed, the same one for a retry), disarm it, and write the pending
    top-up and attempt. None when there is nothing to charge now (another check got there, the
    balance rose, the card is gone, or the monthly maximum is reached), or the account's address
    is not verified (changed since the rule was set): as every purchase, a charge waits for it,
    the rule left as it is, so the first check after the verification charges."""
    rule = await _lock_rule(db, user_id)
    if (
        rule is None
        or not rule.enabled
        or rule.paused_reason is not None
        or rule.in_flight_top_up_id is not None
        or not _may_charge(rule.armed, rule.consecutive_failures, rule.next_attempt_at, now)
    ):
        return None
    if not await email_verified(db, user_id):
        return None
    live = (await metering.live_balances(db, [user_id], now=now))[user_id]
    if live >= rule.threshold_cents * MILLICENTS_PER_CENT:
        return None
    card = await default_card(db, user_id)
    customer_id = await customer_of(db, user_id)
    if card is None or customer_id is None:
        rule.paused_reason = "No saved card is left to charge."
        return None
    month = _month_start(now).strftime("%Y-%m")
    if rule.monthly_max_cents is not None and (
        await succeeded_this_month(db, user_id, now=now) + rule.amount_cents
        > rule.monthly_max_cents
    ):
        if rule.monthly_max_notified != month:
            rule.monthly_max_notified = month
            request_job(db, JobName.SEND_AUTO_RECHARGE_EMAIL, str(user_id), f"monthly_max:{month}")
        return None
    if rule.armed:
        rule.crossings += 1
        rule.armed = False
        attempt = 1
    else:
        tried = await db.scalar(
            select(func.max(AutoRechargeAttempt.attempt)).where(
                AutoRechargeAttempt.user_id == user_id,
                AutoRechargeAttempt.crossing == rule.crossings,
            )
        )
        attempt = int(tried or 0) + 1
    currency = await db.scalar(select(PricingPolicy.currency).where(PricingPolicy.id == 1))
    assert currency is not None  # seeded before anything is sold
    top_up = CreditTopUp(
        user_id=user_id,
        status=TopUpStatus.PENDING,
        amount_cents=rule.amount_cents,
        currency=currency,
        refunded_cents=0,
        source=TopUpSource.AUTO_RECHARGE,
    )
    db.add(top_up)
    await db.flush()
    key = _stripe_key(user_id, rule.crossings, attempt)
    row = AutoRechargeAttempt(
        user_id=user_id,
        crossing=rule.crossings,
        attempt=attempt,
        top_up_id=top_up.id,
        amount_cents=rule.amount_cents,
        stripe_idempotency_key=key,
        stripe_payment_method_id=card.stripe_payment_method_id,
        status=AttemptStatus.PENDING,
        created_at=now,
    )
    db.add(row)
    rule.in_flight_top_up_id = top_up.id
    await db.flush()
    log.info("auto_recharge_begun", user_id=str(user_id), crossing=rule.crossings, attempt=attempt)
    return PlannedCharge(
        attempt_id=row.id,
        top_up_id=top_up.id,
        user_id=user_id,
        amount_cents=rule.amount_cents,
        currency=currency,
        customer_id=customer_id,
        payment_method_id=card.stripe_payment_method_id,
        idempotency_key=key,
    )


async def charge(gateway: StripeGateway, planned: PlannedCharge) -> OffSessionCharge | None:
    """Step B, with no transaction open: the off-session PaymentIntent. None when Stripe could
    not be reached; the attempt stays pending for reconciliation, which sends the same key."""
    try:
        return await gateway.charge_off_session(
            amount_cents=planned.amount_cents,
            currency=planned.currency,
            customer_id=planned.customer_id,
            payment_method_id=planned.payment_method_id,
            metadata={"top_up_id": str(planned.top_up_id), "user_id": str(planned.user_id)},
            idempotency_key=planned.idempotency_key,
        )
    except PaymentProviderUnavailable as error:
        log.warning(
            "auto_recharge_charge_deferred", attempt_id=str(planned.attempt_id), error=repr(error)
        )
        return None


def _retry_delay(delays: Sequence[int], failures: int) -> timedelta:
    return timedelta(seconds=delays[min(failures, len(delays)) - 1] if delays else 0)


async def settle_charge(
    db: AsyncSession,
    top_up: CreditTopUp,
    outcome: OffSessionCharge,
    *,
    terms: PaymentTerms,
    now: datetime,
) -> str:
    """Step C, with the auto-recharge's top-up locked by the caller: record the charge's outcome
    once. Called with the PaymentIntent's answer, its webhook and reconciliation alike; what
    comes second finds the attempt finished and changes nothing."""
    attempt = await db.scalar(
        select(AutoRechargeAttempt).where(AutoRechargeAttempt.top_up_id == top_up.id)
    )
    if attempt is None:
        return "no auto-recharge attempt has this top-up"
    if attempt.payment_intent_id is None and outcome.payment_intent_id is not None:
        attempt.payment_intent_id = outcome.payment_intent_id
    if attempt.status is not AttemptStatus.PENDING:
        return f"attempt already {attempt.status.value}"
    if outcome.outcome is ChargeOutcome.PROCESSING:
        return "payment processing: its webhook settles it"
    rule = await _lock_rule(db, top_up.user_id)
    assert rule is not None  # rules are never deleted while a user exists
    if rule.in_flight_top_up_id == top_up.id:
        rule.in_flight_top_up_id = None
    attempt.finished_at = now
    if outcome.outcome is ChargeOutcome.SUCCEEDED:
        assert outcome.payment_intent_id is not None
        problems = _mismatches(top_up, outcome)
        if problems:
            log.error("top_up_needs_review", alert=True, top_up_id=str(top_up.id), reason=problems)
            return "mismatch: not credited, alerted"
        await credits.credit_top_up(
            db, top_up, payment_intent_id=outcome.payment_intent_id, now=now
        )
        await invoices.issue_for_top_up(
            db,
            top_up,
            seller=terms.seller,
            payment_method=await card_named(db, attempt.stripe_payment_method_id),
            now=now,
        )
        attempt.status = AttemptStatus.SUCCEEDED
        rule.consecutive_failures = 0
        rule.next_attempt_at = None
        log.info("auto_recharge_succeeded", user_id=str(top_up.user_id), top_up_id=str(top_up.id))
        return "auto-recharge credited"
    attempt.status = AttemptStatus.FAILED
    attempt.failure_code = (outcome.failure_code or "payment_failed")[:100]
    attempt.decline_code = outcome.decline_code[:100] if outcome.decline_code else None
    attempt.failure_message = (outcome.failure_message or "The payment failed.")[:500]
    credits.transition_top_up(top_up, TopUpStatus.PAYMENT_FAILED, reason=attempt.failure_code)
    rule.consecutive_failures += 1
    rule.next_attempt_at = now + _retry_delay(terms.retry_delays, rule.consecutive_failures)
    if (
        outcome.outcome is ChargeOutcome.REQUIRES_ACTION
        or attempt.failure_code == AUTHENTICATION_REQUIRED
    ):
        rule.paused_reason = (
            "Your bank asked to confirm the payment with you present: pay a top-up on the "
            "billing page, then turn auto-recharge on again."
        )
        email = "authentication"
    elif rule.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
        rule.paused_reason = (
            f"Paused after {rule.consecutive_failures} failed charges in a row "
            f"(last: {attempt.failure_code}): check your card, then turn auto-recharge on again."
        )
        email = "paused"
    else:
        email = "failed"
    request_job(db, JobName.SEND_AUTO_RECHARGE_EMAIL, str(top_up.user_id), f"{email}:{attempt.id}")
    log.info(
        "auto_recharge_failed",
        user_id=str(top_up.user_id),
        top_up_id=str(top_up.id),
        failure_code=attempt.failure_code,
        decline_code=attempt.decline_code,
        paused=rule.paused_reason is not None,
    )
    return f"auto-recharge failed: {attempt.failure_code}"


def _mismatches(top_up: CreditTopUp, outcome: OffSessionCharge) -> str:
    return "; ".join(
        problem
        for problem, wrong in (
            (
                f"amount {outcome.amount_cents} != {top_up.amount_cents}",
                outcome.amount_cents != top_up.amount_cents,
            ),
            (
                f"currency {outcome.currency} != {top_up.currency}",
                outcome.currency != top_up.currency,
            ),
        )
        if wrong
    )


async def settle_planned(
    db: AsyncSession,
    planned: PlannedCharge,
    outcome: OffSessionCharge,
    *,
    terms: PaymentTerms,
    now: datetime,
) -> str:
    """Step C for the charge step B just made."""
    top_up = await credits.lock_top_up(db, planned.top_up_id)
    assert top_up is not None  # committed by step A; top-ups are never deleted
    return await settle_charge(db, top_up, outcome, terms=terms, now=now)


# Reconciliation ---------------------------------------------------------------------------------


async def stale_attempts(
    db: AsyncSession, *, now: datetime, older_than: timedelta
) -> list[uuid.UUID]:
    """Attempts still pending after `older_than` (a worker killed between the steps, or Stripe
    away): the partial index of pending attempts serves it."""
    return list(
        await db.scalars(
            select(AutoRechargeAttempt.id)
            .where(
                AutoRechargeAttempt.status == AttemptStatus.PENDING,
                AutoRechargeAttempt.created_at < now - older_than,
            )
            .order_by(AutoRechargeAttempt.created_at)
            .limit(200)
        )
    )


async def planned_again(db: AsyncSession, attempt_id: uuid.UUID) -> PlannedCharge | None:
    """A pending attempt's charge exactly as step A planned it (its card, amount and key), to
    send again: Stripe answers the PaymentIntent the key made, if it made one."""
    attempt = await db.get(AutoRechargeAttempt, attempt_id)
    if attempt is None or attempt.status is not AttemptStatus.PENDING:
        return None
    top_up = await db.get(CreditTopUp, attempt.top_up_id)
    customer_id = await customer_of(db, attempt.user_id)
    assert top_up is not None  # written with the attempt; top-ups are never deleted
    assert customer_id is not None  # step A found it
    return PlannedCharge(
        attempt_id=attempt.id,
        top_up_id=top_up.id,
        user_id=attempt.user_id,
        amount_cents=attempt.amount_cents,
        currency=top_up.currency,
        customer_id=customer_id,
        payment_method_id=attempt.stripe_payment_method_id,
        idempotency_key=attempt.stripe_idempotency_key,
    )


async def recharge_again(
    db: AsyncSession,
    gateway: StripeGateway,
    attempt_id: uuid.UUID,
    *,
    terms: PaymentTerms,
    now: datetime,
) -> str:
    """Reconciliation of a charge left pending: sent again exactly as planned, with the same
    Stripe key (only read so far: no lock is held while Stripe is asked), then step C. Stripe
    answers the PaymentIntent it made before, never a second charge, or makes the one it never
    got."""
    planned = await planned_again(db, attempt_id)
    if planned is None:
        return "nothing to do"
    outcome = await charge(gateway, planned)
    if outcome is None:
        return "Stripe unreachable: left pending"
    return await settle_planned(db, planned, outcome, terms=terms, now=now)


# E-mails ----------------------------------------------------------------------------------------


def top_up_link(public_base_url: str) -> str:
    return f"{public_base_url.rstrip('/')}/billing#top-up"


async def send_auto_recharge_email(
    db: AsyncSession,
    user_id: uuid.UUID,
    about: str,
    *,
    backend: MailBackend,
    public_base_url: str,
    now: datetime,
) -> bool:
    """The e-mail `about` names: `failed:<attempt>`, `paused:<attempt>`,
    `authentication:<attempt>` or `monthly_max:<YYYY-MM>`; keyed `auto_recharge_<about>` (for
    the month, with the user), so a repeated job sends it once."""
    kind, _, subject_id = about.partition(":")
    recipient = await db.scalar(select(User.email).where(User.id == user_id))
    if recipient is None:
        return False
    billing = f"{public_base_url.rstrip('/')}/billing#auto-recharge"
    if kind == "monthly_max":
        rule = await rule_of(db, user_id)
        if rule is None or rule.monthly_max_cents is None:
            return False
        currency = await db.scalar(select(PricingPolicy.currency).where(PricingPolicy.id == 1))
        limit = format_money(rule.monthly_max_cents, currency or "usd")
        return await send_email(
            db,
            backend=backend,
            dedupe_key=f"auto_recharge_monthly_max:{user_id}:{subject_id}",
            recipient=recipient,
            subject="Auto-recharge reached its monthly maximum",
            body=(
                f"Your auto-recharge has charged {limit} this month, its monthly maximum, so it "
                "will not charge your card again before next month. Your pay-as-you-go "
                "instances stop when your credit runs out. Top up or raise the maximum at "
                f"{billing}"
            ),
            now=now,
        )
    attempt = await db.get(AutoRechargeAttempt, uuid.UUID(subject_id))
    if attempt is None or attempt.user_id != user_id:
        return False
    top_up = await db.get(CreditTopUp, attempt.top_up_id)
    amount = format_money(attempt.amount_cents, top_up.currency if top_up else "usd")
    reason = attempt.failure_message or attempt.failure_code or "the payment failed"
    if kind == "authentication":
        subject = "Auto-recharge needs you: your bank asked to confirm the payment"
        body = (
            f"We tried to add {amount} of credit with your saved card, and your bank asked for "
            "the payment to be confirmed with you present. Auto-recharge is paused. Please top "
            f"up on the billing page, where you can confirm it: {top_up_link(public_base_url)}"
        )
    elif kind == "paused":
        subject = "Auto-recharge is paused: your card was declined again"
        body = (
            f"We could not add {amount} of credit with your saved card ({reason}). After "
            f"{MAX_CONSECUTIVE_FAILURES} failed charges in a row auto-recharge is paused. Check "
            f"or replace your card, then turn it on again: {billing}"
        )
    else:
        subject = "Auto-recharge failed: your card was declined"
        body = (
            f"We could not add {amount} of credit with your saved card ({reason}). We will try "
            f"again later. Check or replace your card at {billing}"
        )
    return await send_email(
        db,
        backend=backend,
        dedupe_key=f"auto_recharge_{kind}:{attempt.id}",
        recipient=recipient,
        subject=subject,
        body=body,
        now=now,
    )
