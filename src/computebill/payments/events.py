"""Applying Stripe's events to orders and credit top-ups, the one fulfilment function, and
reconciliation of orders and top-ups whose events went missing (docs/architecture.md §4, §5.5,
§5.9).

Stripe is always read first, with no row locked; then the event and the order are locked and
what was read is checked against them (a slow or hanging Stripe never holds a lock)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.cart.service import Purchased, remove_purchased
from computebill.credits import service as credits
from computebill.credits.models import CreditTopUp, TopUpSource, TopUpStatus
from computebill.instances.service import stop_order_instances, take_back_extension
from computebill.invoices import service as invoices
from computebill.jobs import JobName, request_job
from computebill.metrics import PAYMENT_TO_PAID, PAYMENTS, REFUNDS, WEBHOOK_LAG, after_commit
from computebill.orders import service as orders
from computebill.orders.models import Order, OrderStatus
from computebill.payments import recharge
from computebill.payments.cards import card_label
from computebill.payments.gateway import StripeGateway, charge_of_intent
from computebill.payments.models import EventStatus, StripeEvent
from computebill.payments.terms import PaymentTerms

log = structlog.get_logger(__name__)


Session = dict[str, Any]  # a Checkout Session as Stripe has it, its PaymentIntent expanded


@dataclass(frozen=True, slots=True)
class Outcome:
    text: str
    acted: bool  # False: stale, repeated, or nothing to do (the event is then `ignored`)
    paid: bool = False  # an order or a top-up became paid


def _acted(text: str) -> Outcome:
    return Outcome(text, acted=True)


def _ignored(text: str) -> Outcome:
    return Outcome(text, acted=False)


def _moved(moved: bool, order: Order, done: str) -> Outcome:
    return _acted(done) if moved else _ignored(f"stale: order is {order.status.value}")


# Fulfilment -------------------------------------------------------------------------------------


async def fulfill_checkout(
    db: AsyncSession,
    gateway: StripeGateway,
    session_id: str,
    *,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    """The one fulfilment, for the success page: reads the session from Stripe, then applies it."""
    return await fulfil_session(
        db, await gateway.retrieve_checkout(session_id), terms=terms, now=now
    )


def _payment_intent_of(session: Session) -> str | None:
    intent = session.get("payment_intent")
    if isinstance(intent, dict):
        return str(intent["id"])
    return str(intent) if intent else None


def _latest_charge(intent: object) -> dict[str, Any] | str | None:
    """The PaymentIntent's latest charge: expanded (`retrieve_checkout`), or its id."""
    return intent.get("latest_charge") if isinstance(intent, dict) else None


def _charge_id_of(intent: object) -> str | None:
    charge = _latest_charge(intent)
    if isinstance(charge, dict):
        return str(charge["id"])
    return str(charge) if charge else None


def payment_method_of(session: Session) -> str:
    """How a session was paid, as an invoice names it: "Visa •••• 4242" when the charge's card
    is known, else "Card"."""
    charge = _latest_charge(session.get("payment_intent"))
    details = (charge.get("payment_method_details") if isinstance(charge, dict) else None) or {}
    card = details.get("card") if isinstance(details, dict) else None
    if isinstance(card, dict) and card.get("last4"):
        return card_label(str(card.get("brand") or "card"), str(card["last4"]))
    if isinstance(details, dict) and details.get("type") == "us_bank_account":
        return "Bank account (ACH)"
    return "Card"


def _mismatches(
    session: Session, paying: str, *, amount_cents: int, currency: str, paid: uuid.UUID
) -> list[str]:
    """How a paid session differs from the order or top-up (`paying`) it should pay."""
    named = (session.get("metadata") or {}).get(f"{paying}_id")
    return [
        problem
        for problem, wrong in (
            (
                f"amount {session.get('amount_total')} != {amount_cents}",
                session.get("amount_total") != amount_cents,
            ),
            (
                f"currency {session.get('currency')} != {currency}",
                session.get("currency") != currency,
            ),
            (f"metadata {paying.replace('_', '-')} {named} != {paid}", named != str(paid)),
        )
        if wrong
    ]


def _paid(session: Session) -> bool:
    return session.get("status") == "complete" and session.get("payment_status") == "paid"


async def fulfil_session(
    db: AsyncSession, session: Session, *, terms: PaymentTerms, now: datetime
) -> Outcome:
    """Checks a session read from Stripe against what it pays, locked, and marks it paid exactly
    once (from the webhook, the success page and reconciliation alike): a top-up when the
    session's metadata names one, else an order."""
    if "top_up_id" in (session.get("metadata") or {}):
        return await _fulfil_top_up(db, session, terms=terms, now=now)
    session_id = str(session["id"])
    order = await orders.lock_order_by_session(db, session_id)
    if order is None:
        log.error("checkout_for_unknown_order", alert=True, session_id=session_id)
        return _ignored("no order has this checkout session")
    if order.status is not OrderStatus.PENDING:
        return _ignored(f"order already {order.status.value}")
    if not _paid(session):
        return _not_paid_yet(session)
    problems = _mismatches(
        session, "order", amount_cents=order.total_cents, currency=order.currency, paid=order.id
    )
    if problems:
        orders.flag_for_review(order, "paid session does not match: " + "; ".join(problems))
        return _acted("mismatch: flagged for review")
    intent = session.get("payment_intent") or {}
    orders.transition(order, OrderStatus.PAID, reason=f"checkout {session_id} paid", now=now, db=db)
    order.payment_intent_id = intent.get("id") if isinstance(intent, dict) else str(intent)
    order.charge_id = _charge_id_of(intent)
    order.paid_at = now
    # Numbered in this transaction: a fulfilment rolled back uses no number (§4, paperwork).
    await invoices.issue_for_order(
        db,
        order,
        seller=terms.seller,
        payment_method=payment_method_of(session),
        now=now,
    )
    lines = await orders.order_lines(db, order.id)
    await remove_purchased(
        db,
        user_id=order.user_id,
        purchased=[
            Purchased(
                line.gpu_model_id,
                line.gpu_count,
                line.vcpus,
                line.storage_gb,
                line.hours,
                line.region,
            )
            for line in lines
            if line.extends_instance_id is None  # an extension was never in the cart
        ],
    )
    request_job(db, JobName.PROVISION_ORDER, str(order.id))
    request_job(db, JobName.SEND_ORDER_RECEIPT, str(order.id))
    PAYMENTS.count(db, kind="order", currency=order.currency, cents=order.total_cents)
    return Outcome("order paid", acted=True, paid=True)


def _not_paid_yet(session: Session) -> Outcome:
    return _ignored(
        f"session is {session.get('status')}/{session.get('payment_status')}: not paid yet"
    )


async def _fulfil_top_up(
    db: AsyncSession, session: Session, *, terms: PaymentTerms, now: datetime
) -> Outcome:
    """A paid top-up session: the top-up, locked, is checked against it and credited once
    (`credits.credit_top_up`, ledger key `top_up:<payment intent>`)."""
    session_id = str(session["id"])
    top_up = await credits.lock_top_up_by_session(db, session_id)
    if top_up is None:
        log.error("checkout_for_unknown_top_up", alert=True, session_id=session_id)
        return _ignored("no top-up has this checkout session")
    if top_up.status is not TopUpStatus.PENDING:
        return _ignored(f"top-up already {top_up.status.value}")
    if not _paid(session):
        return _not_paid_yet(session)
    intent = _payment_intent_of(session)
    problems = _mismatches(
        session,
        "top_up",
        amount_cents=top_up.amount_cents,
        currency=top_up.currency,
        paid=top_up.id,
    ) + (["no payment intent"] if intent is None else [])
    if problems:
        # Never credited on a mismatch: an operator looks (the top-up stays pending).
        log.error(
            "top_up_needs_review",
            alert=True,
            top_up_id=str(top_up.id),
            reason="paid session does not match: " + "; ".join(problems),
        )
        return _acted("mismatch: not credited, alerted")
    assert intent is not None
    await credits.credit_top_up(db, top_up, payment_intent_id=intent, now=now)
    await invoices.issue_for_top_up(
        db,
        top_up,
        seller=terms.seller,
        payment_method=payment_method_of(session),
        now=now,
    )
    card = _saved_card_of(session) if top_up.save_card else None
    if card is not None:
        request_job(db, JobName.SAVE_PAYMENT_METHOD, *card)
    return Outcome("top-up credited", acted=True, paid=True)


def _saved_card_of(session: Session) -> tuple[str, str] | None:
    """The Customer and card a paid session kept for later (`setup_future_usage`), if any."""
    intent = session.get("payment_intent")
    customer = session.get("customer")
    if not isinstance(intent, dict) or not customer:
        return None
    method = intent.get("payment_method")
    method_id = method.get("id") if isinstance(method, dict) else method
    return (str(customer), str(method_id)) if method_id else None


# What each event reads from Stripe, before anything is locked -----------------------------------

Read = Callable[[AsyncSession, StripeGateway, dict[str, Any]], Awaitable[Session | None]]


async def _read_nothing(db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any]) -> None:
    return None


async def _read_session(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any]
) -> Session | None:
    return await gateway.retrieve_checkout(str(obj["id"]))


async def _read_paid_session(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any]
) -> Session | None:
    if obj.get("mode") == "setup":
        return None  # a card saved: its SetupIntent names it (`_session_completed`)
    if obj.get("payment_status") != "paid":
        return None  # completed unpaid: nothing to fulfil yet
    return await _read_session(db, gateway, obj)


async def _read_session_of_payment(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any]
) -> Session | None:
    """For a refund, charge or dispute whose payment no order knows yet (events arrive in any
    order): the Checkout Session that made the payment, so it is fulfilled first."""
    intent = obj.get("payment_intent")
    if not intent:
        return None
    known = await db.scalar(
        select(Order.id)
        .where(Order.payment_intent_id == str(intent))
        .union_all(select(CreditTopUp.id).where(CreditTopUp.payment_intent_id == str(intent)))
        .limit(1)
    )
    if known is not None:
        return None
    session_id = await gateway.checkout_of_payment(str(intent))
    return await gateway.retrieve_checkout(session_id) if session_id is not None else None


# What each event does, with the event row locked ------------------------------------------------

Apply = Callable[
    [AsyncSession, dict[str, Any], Session | None, PaymentTerms, datetime], Awaitable[Outcome]
]


async def _session_completed(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    if obj.get("mode") == "setup":
        setup_intent = obj.get("setup_intent")
        setup_id = setup_intent.get("id") if isinstance(setup_intent, dict) else setup_intent
        if not setup_id or not obj.get("customer"):
            return _ignored("setup session without a SetupIntent or Customer")
        request_job(db, JobName.SAVE_SETUP_CARD, str(obj["customer"]), str(setup_id))
        return _acted("card setup completed: saving the card")
    if session is None:
        return _ignored("completed unpaid: waiting for the asynchronous payment")
    return await fulfil_session(db, session, terms=terms, now=now)


async def _async_succeeded(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    assert session is not None  # read by _read_session
    return await fulfil_session(db, session, terms=terms, now=now)


async def _move_by_session(
    db: AsyncSession,
    session_id: str,
    to: OrderStatus,
    top_up_to: TopUpStatus,
    reason: str,
    now: datetime,
) -> Outcome:
    """An unpaid session closed: its order, or its top-up, moves to `to` / `top_up_to`."""
    order = await orders.lock_order_by_session(db, session_id)
    if order is not None:
        moved = orders.transition(order, to, reason=reason, now=now, db=db)
        return _moved(moved, order, f"order {to.value}")
    top_up = await credits.lock_top_up_by_session(db, session_id)
    if top_up is None:
        return _ignored("nothing has this checkout session")
    if credits.transition_top_up(top_up, top_up_to, reason=reason):
        return _acted(f"top-up {top_up_to.value}")
    return _ignored(f"stale: top-up is {top_up.status.value}")


async def _async_failed(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    return await _move_by_session(
        db,
        str(obj["id"]),
        OrderStatus.PAYMENT_FAILED,
        TopUpStatus.PAYMENT_FAILED,
        "payment failed",
        now,
    )


async def _session_expired(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    return await _expire_session(db, str(obj["id"]), "checkout session expired", now)


async def _expire_session(db: AsyncSession, session_id: str, reason: str, now: datetime) -> Outcome:
    return await _move_by_session(
        db, session_id, OrderStatus.EXPIRED, TopUpStatus.EXPIRED, reason, now
    )


async def _payment_of(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Order | CreditTopUp | None:
    """The order or top-up a refund, charge or dispute is about, locked; its checkout fulfilled
    first when its own completion has not been applied yet (the one idempotent fulfilment), so
    the refund or dispute is never lost."""
    intent = obj.get("payment_intent")
    if not intent:
        return None
    for attempt in range(2):
        order = await orders.lock_order_by_payment_intent(db, str(intent))
        if order is not None:
            return order
        top_up = await credits.lock_top_up_by_payment_intent(db, str(intent))
        if top_up is not None:
            return top_up
        if attempt or session is None:
            return None
        await fulfil_session(db, session, terms=terms, now=now)
        await db.flush()
    return None


async def _reverse_top_up(
    db: AsyncSession, top_up: CreditTopUp, *, amount_cents: int, key: str, now: datetime
) -> Outcome:
    """Where a refund or dispute of a top-up takes its credit back (docs/architecture.md §4,
    top-ups). The balance may go negative here."""
    posted = await credits.reverse_top_up(
        db, top_up, amount_cents=amount_cents, idempotency_key=key, now=now
    )
    if posted is None:
        return _ignored(f"top-up is {top_up.status.value}: nothing was credited")
    if not posted.created:
        return _ignored(f"reversal {key} already posted")
    log.info(
        "top_up_reversed",
        top_up_id=str(top_up.id),
        amount_cents=amount_cents,
        balance_after_millicents=posted.entry.balance_after_millicents,
    )
    # Less credit: the account's cap comes sooner, or now (a negative balance stops its
    # pay-as-you-go instances). The job judges it in a transaction of its own, which locks the
    # instances before the account, as every writer does (§4, pay as you go); new launches are
    # refused meanwhile, since admission needs a live balance above zero.
    request_job(db, JobName.ENFORCE_CREDIT_CAP, str(top_up.user_id))
    return _acted(f"top-up reversal of {amount_cents} posted")


async def _refund_created(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    paid = await _payment_of(db, obj, session, terms, now)
    if paid is None:
        return _ignored("nothing has this payment")
    if isinstance(paid, CreditTopUp):
        if obj.get("status") in ("failed", "canceled"):
            return _ignored(f"refund {obj.get('status')}: nothing to reverse")
        amount_cents = int(obj["amount"])
        outcome = await _reverse_top_up(
            db, paid, amount_cents=amount_cents, key=f"top_up_reversal:{obj['id']}", now=now
        )
        if outcome.acted:  # posted now, not before
            REFUNDS.count(db, kind="top_up", currency=paid.currency, cents=amount_cents)
        return outcome
    order = paid
    await orders.record_refund(
        db,
        order,
        refund_id=str(obj["id"]),
        amount_cents=int(obj["amount"]),
        status=str(obj.get("status", "succeeded")),
        now=now,
    )
    return _acted("refund recorded")


async def _charge_refunded(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    paid = await _payment_of(db, obj, session, terms, now)
    if paid is None:
        return _ignored("nothing has this payment")
    if isinstance(paid, CreditTopUp):
        return _top_up_refunded(paid, int(obj.get("amount_refunded", 0)))
    order = paid
    # Cumulative, so a late or repeated event never lowers it.
    refunded = min(max(order.refunded_cents, int(obj.get("amount_refunded", 0))), order.total_cents)
    order.refunded_cents = refunded
    full = refunded >= order.total_cents
    to = OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED
    moved = orders.transition(order, to, reason=f"{refunded} refunded", now=now, db=db)
    if moved and full:
        await stop_order_instances(db, order.id, reason="order refunded", suspend=False)
        await take_back_extension(db, order, reason="order refunded")
    return _moved(moved, order, f"order {to.value}")


def _top_up_refunded(top_up: CreditTopUp, amount_refunded: int) -> Outcome:
    """A top-up's refunded total and status; the credit itself is taken back per refund, by
    `refund.created` (one ledger key per refund, whatever order the events come in)."""
    refunded = min(max(top_up.refunded_cents, amount_refunded), top_up.amount_cents)
    full = refunded >= top_up.amount_cents
    to = TopUpStatus.REFUNDED if full else TopUpStatus.PARTIALLY_REFUNDED
    if top_up.status not in credits.TOP_UP_CREDITED:
        return _ignored(f"stale: top-up is {top_up.status.value}")
    top_up.refunded_cents = refunded
    if credits.transition_top_up(top_up, to, reason=f"{refunded} refunded"):
        return _acted(f"top-up {to.value}")
    return _ignored(f"stale: top-up is {top_up.status.value}")


async def _dispute_created(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    paid = await _payment_of(db, obj, session, terms, now)
    if paid is None:
        return _ignored("nothing has this payment")
    if isinstance(paid, CreditTopUp):
        outcome = await _reverse_top_up(
            db, paid, amount_cents=int(obj["amount"]), key=f"top_up_dispute:{obj['id']}", now=now
        )
        credits.transition_top_up(paid, TopUpStatus.DISPUTED, reason="dispute opened")
        return outcome
    order = paid
    moved = orders.transition(order, OrderStatus.DISPUTED, reason="dispute opened", now=now, db=db)
    if moved:
        await stop_order_instances(db, order.id, reason="payment disputed", suspend=True)
        await take_back_extension(db, order, reason="payment disputed")
    return _moved(moved, order, "order disputed")


async def _setup_succeeded(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    customer, method = obj.get("customer"), obj.get("payment_method")
    if not customer or not method:
        return _ignored("SetupIntent without a Customer or card")
    method_id = method.get("id") if isinstance(method, dict) else method
    request_job(db, JobName.SAVE_PAYMENT_METHOD, str(customer), str(method_id))
    return _acted("card set up: saving it")


async def _payment_intent_settled(
    db: AsyncSession,
    obj: dict[str, Any],
    session: Session | None,
    terms: PaymentTerms,
    now: datetime,
) -> Outcome:
    """An off-session PaymentIntent of an auto-recharge succeeded or failed: its top-up, found by
    the PaymentIntent or (before step C recorded it) by the metadata's `top_up_id`, is settled
    once. Payments of Checkout Sessions (orders, top-ups paid on the page) are applied by the
    session's own events."""
    metadata = obj.get("metadata") or {}
    top_up = await credits.lock_top_up_by_payment_intent(db, str(obj["id"]))
    if top_up is None and metadata.get("top_up_id"):
        try:
            top_up_id = uuid.UUID(str(metadata["top_up_id"]))
        except ValueError:
            return _ignored("metadata names no top-up")
        top_up = await credits.lock_top_up(db, top_up_id)
    if top_up is None:
        return _ignored("no top-up has this payment")
    if top_up.source != TopUpSource.AUTO_RECHARGE:
        return _ignored("paid through Checkout: its session's events apply it")
    if metadata.get("user_id") != str(top_up.user_id) or top_up.payment_intent_id not in (
        None,
        str(obj["id"]),
    ):
        log.error(
            "top_up_needs_review",
            alert=True,
            top_up_id=str(top_up.id),
            reason=f"payment intent {obj['id']} does not match the top-up",
        )
        return _ignored("payment does not match its top-up: alerted")
    text = await recharge.settle_charge(
        db,
        top_up,
        charge_of_intent(obj),
        terms=terms,
        now=now,
    )
    return _acted(text)


HANDLERS: dict[str, tuple[Read, Apply]] = {
    "checkout.session.completed": (_read_paid_session, _session_completed),
    "checkout.session.async_payment_succeeded": (_read_session, _async_succeeded),
    "checkout.session.async_payment_failed": (_read_nothing, _async_failed),
    "checkout.session.expired": (_read_nothing, _session_expired),
    "refund.created": (_read_session_of_payment, _refund_created),
    "charge.refunded": (_read_session_of_payment, _charge_refunded),
    "charge.dispute.created": (_read_session_of_payment, _dispute_created),
    "setup_intent.succeeded": (_read_nothing, _setup_succeeded),
    "payment_intent.succeeded": (_read_nothing, _payment_intent_settled),
    "payment_intent.payment_failed": (_read_nothing, _payment_intent_settled),
}


async def process_event(
    db: AsyncSession,
    gateway: StripeGateway,
    event_id: str,
    *,
    terms: PaymentTerms,
    now: datetime,
) -> None:
    """Apply one stored event, once. Runs in the caller's transaction, which also records that
    the event was handled, so the effect and the record commit together or not at all. Stripe
    is read before the event row is locked; a delivery that got there first wins."""
    event = await db.get(StripeEvent, event_id)
    if event is None or event.processed_at is not None:
        return
    handler = HANDLERS.get(event.type)
    obj: dict[str, Any] = event.payload["data"]["object"]
    read, apply = handler if handler is not None else (_read_nothing, None)
    session = await read(db, gateway, obj)
    locked = await db.scalar(
        select(StripeEvent)
        .where(StripeEvent.id == event_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert locked is not None  # events are never deleted
    if locked.processed_at is not None:
        return
    outcome = (
        await apply(db, obj, session, terms, now)
        if apply is not None
        else _ignored(f"{locked.type} is not acted on")
    )
    locked.status = EventStatus.PROCESSED if outcome.acted else EventStatus.IGNORED
    locked.outcome = outcome.text
    locked.attempts += 1
    locked.processed_at = now
    locked.last_error = None
    lag = (now - locked.received_at).total_seconds()
    since_payment = (now - locked.created).total_seconds()
    after_commit(db, lambda: WEBHOOK_LAG.observe(max(lag, 0.0)))
    if outcome.paid:
        after_commit(db, lambda: PAYMENT_TO_PAID.observe(max(since_payment, 0.0)))
    log.info("stripe_event_processed", event_id=event_id, type=locked.type, outcome=outcome.text)


# Reconciliation ---------------------------------------------------------------------------------

RECONCILE_AFTER = timedelta(minutes=5)


async def pending_orders_to_reconcile(db: AsyncSession, *, now: datetime) -> list[uuid.UUID]:
    return await _pending_to_reconcile(db, Order, OrderStatus.PENDING, now=now)


async def pending_top_ups_to_reconcile(db: AsyncSession, *, now: datetime) -> list[uuid.UUID]:
    return await _pending_to_reconcile(db, CreditTopUp, TopUpStatus.PENDING, now=now)


async def _pending_to_reconcile(
    db: AsyncSession,
    paid: type[Order] | type[CreditTopUp],
    pending: OrderStatus | TopUpStatus,
    *,
    now: datetime,
) -> list[uuid.UUID]:
    """The oldest orders or top-ups with a session that are still pending after
    RECONCILE_AFTER (the (status, created_at) index serves it)."""
    return list(
        await db.scalars(
            select(paid.id)
            .where(
                paid.status == pending,
                paid.checkout_session_id.is_not(None),
                paid.created_at < now - RECONCILE_AFTER,
            )
            .order_by(paid.created_at)
            .limit(200)
        )
    )


async def reconcile_order(
    db: AsyncSession,
    gateway: StripeGateway,
    order_id: uuid.UUID,
    *,
    terms: PaymentTerms,
    now: datetime,
) -> str:
    """A pending order whose events went missing: ask Stripe (once, nothing locked), then fulfil
    or close it, re-checked under the order's lock."""
    session_id = await db.scalar(
        select(Order.checkout_session_id).where(
            Order.id == order_id, Order.status == OrderStatus.PENDING
        )
    )
    return await _reconcile_session(db, gateway, session_id, terms=terms, now=now)


async def reconcile_top_up(
    db: AsyncSession,
    gateway: StripeGateway,
    top_up_id: uuid.UUID,
    *,
    terms: PaymentTerms,
    now: datetime,
) -> str:
    """A pending top-up whose events went missing, as `reconcile_order`."""
    session_id = await db.scalar(
        select(CreditTopUp.checkout_session_id).where(
            CreditTopUp.id == top_up_id, CreditTopUp.status == TopUpStatus.PENDING
        )
    )
    return await _reconcile_session(db, gateway, session_id, terms=terms, now=now)


async def _reconcile_session(
    db: AsyncSession,
    gateway: StripeGateway,
    session_id: str | None,
    *,
    terms: PaymentTerms,
    now: datetime,
) -> str:
    if session_id is None:
        return "nothing to do"
    session = await gateway.retrieve_checkout(session_id)
    if _paid(session):
        return (await fulfil_session(db, session, terms=terms, now=now)).text
    if session.get("status") == "expired":
        return (await _expire_session(db, session_id, "reconciled: expired", now)).text
    return f"session is {session.get('status')}/{session.get('payment_status')}"
