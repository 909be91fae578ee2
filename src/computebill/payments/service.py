"""Payments: the Stripe customer, opening Checkout, the webhook inbox, event processing and the
one fulfilment function (DESIGN §5.5)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.catalog.service import Catalog
from computebill.errors import AppError, NotFound
from computebill.instances.service import stop_order_instances
from computebill.jobs import JobName, request_job
from computebill.orders import service as orders
from computebill.orders.models import Order, OrderStatus
from computebill.payments.gateway import (
    CheckoutLine,
    PaymentProviderUnavailable,
    PaymentsNotConfigured,
    StripeGateway,
)
from computebill.payments.models import EventStatus, StripeCustomer, StripeEvent

log = structlog.get_logger(__name__)


# Checkout ---------------------------------------------------------------------------------------


async def customer_for(db: AsyncSession, gateway: StripeGateway, user_id: uuid.UUID) -> str:
    """The user's Stripe Customer, created the first time (the key makes retries safe)."""
    existing = await db.scalar(
        select(StripeCustomer.customer_id).where(StripeCustomer.user_id == user_id)
    )
    if existing is not None:
        return existing
    email = await db.scalar(select(User.email).where(User.id == user_id))
    customer_id = await gateway.create_customer(user_id=str(user_id), email=str(email))
    await db.execute(
        insert(StripeCustomer)
        .values(user_id=user_id, customer_id=customer_id)
        .on_conflict_do_nothing(index_elements=[StripeCustomer.user_id])
    )
    return customer_id


async def open_checkout(
    db: AsyncSession, gateway: StripeGateway, order: Order, *, public_base_url: str, now: datetime
) -> None:
    """Create the order's Checkout Session, priced from the order's own lines, never the request.

    Raises PaymentProviderUnavailable after noting the error on the order; the Stripe
    idempotency key is the order's, so trying again never opens a second session."""
    if order.checkout_session_id is not None:
        return
    lines = await orders.order_lines(db, order.id)
    base = public_base_url.rstrip("/")
    try:
        customer_id = await customer_for(db, gateway, order.user_id)
        opened = await gateway.open_checkout(
            order_id=str(order.id),
            customer_id=customer_id,
            currency=order.currency,
            lines=[
                CheckoutLine(
                    name=f"{line.gpu_count} × {line.gpu_name}",
                    description=(
                        f"{line.vcpus} vCPUs, {line.storage_gb} GB NVMe, {line.hours} h "
                        f"in {line.region}"
                    ),
                    unit_amount_cents=line.unit_total_cents,
                    quantity=line.quantity,
                )
                for line in lines
            ],
            success_url=f"{base}/checkout/success?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base}/checkout/canceled?order_id={order.id}",
            expires_at=now + orders.CHECKOUT_LIFETIME,
        )
    except PaymentProviderUnavailable as error:
        order.checkout_error = f"{now.isoformat()}: {error}"[:500]
        raise
    order.checkout_session_id = opened.session_id
    order.checkout_url = opened.url
    order.checkout_expires_at = opened.expires_at
    order.checkout_error = None
    await db.flush()


async def start_checkout(
    db: AsyncSession,
    gateway: StripeGateway,
    *,
    user_id: uuid.UUID,
    catalog: Catalog,
    idempotency_key: str | None,
    public_base_url: str,
    now: datetime,
) -> Order:
    """Checkout, for the JSON API and the cart page alike: the order the cart becomes (or the one
    that already answers this request) with its Checkout Session open.

    The one place a service commits: the order is committed before Stripe is asked, so a retry
    finds it (and its key) even if the request fails afterwards. Raises PaymentsNotConfigured,
    or PaymentProviderUnavailable with the note on the order left for the caller to commit."""
    prepared = await orders.prepare_checkout(
        db, user_id=user_id, catalog=catalog, idempotency_key=idempotency_key, now=now
    )
    order = prepared.order
    if order.checkout_url is None:
        await db.commit()
        await open_checkout(db, gateway, order, public_base_url=public_base_url, now=now)
    return order


async def confirm_checkout(
    db: AsyncSession, gateway: StripeGateway, *, user_id: uuid.UUID, session_id: str, now: datetime
) -> Order:
    """The success page: fulfil the user's own checkout if Stripe says it is paid (the webhook
    may not have arrived yet) and answer its order. Someone else's session, or an unknown one,
    is NotFound and nothing is done. Stripe being away leaves the order as it is."""
    owned = (
        await db.execute(
            select(Order.id, Order.status).where(
                Order.checkout_session_id == session_id, Order.user_id == user_id
            )
        )
    ).first()
    if owned is None:
        raise NotFound("There is no such checkout.")
    order_id, status = owned
    if status is OrderStatus.PENDING:
        # Only ids were read so far: fulfilment locks and loads the order itself, fresh.
        try:
            outcome = await fulfill_checkout(db, gateway, session_id, now=now)
        except (PaymentProviderUnavailable, PaymentsNotConfigured) as error:
            log.warning("checkout_confirmation_deferred", session_id=session_id, error=str(error))
        else:
            log.info("checkout_confirmed", session_id=session_id, outcome=outcome.text)
    order = await db.get(Order, order_id)
    assert order is not None  # it was there a moment ago, and orders are never deleted
    return order


# The webhook inbox ------------------------------------------------------------------------------


def _storable(value: Any) -> Any:
    """The event with every NUL character (in keys and strings) replaced by U+FFFD: PostgreSQL
    cannot hold a NUL in jsonb, and a signed event must be stored, not answered with a 500."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


async def store_event(db: AsyncSession, event: dict[str, Any], *, now: datetime) -> bool:
    """Keep a verified event; True when it is new (a duplicate delivery inserts nothing)."""
    event = _storable(event)
    inserted = await db.scalar(
        insert(StripeEvent)
        .values(
            id=str(event["id"]),
            type=str(event["type"]),
            created=datetime.fromtimestamp(int(event["created"]), tz=UTC),
            payload=event,
            received_at=now,
            status=EventStatus.PENDING,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=[StripeEvent.id])
        .returning(StripeEvent.id)
    )
    if inserted is not None:
        request_job(db, JobName.PROCESS_STRIPE_EVENT, inserted)
    return inserted is not None


# An event being retried has a job waiting in the queue; only if the queue lost it (Redis
# flushed) does the sweep step in, long after the last backoff would have run.
SWEEP_RETRYING_AFTER = timedelta(minutes=10)


async def requeue_unprocessed_events(
    db: AsyncSession, *, now: datetime, sweep_after: timedelta
) -> int:
    """The sweep: ask again for stored events that no job has finished (`sweep_after` is how
    long an event's first job is given)."""
    ids = list(
        await db.scalars(
            select(StripeEvent.id)
            .where(
                StripeEvent.status == EventStatus.PENDING,
                or_(
                    and_(StripeEvent.attempts == 0, StripeEvent.received_at < now - sweep_after),
                    StripeEvent.received_at < now - SWEEP_RETRYING_AFTER,
                ),
            )
            .order_by(StripeEvent.received_at)
            .limit(500)
        )
    )
    for event_id in ids:
        request_job(db, JobName.PROCESS_STRIPE_EVENT, event_id)
    return len(ids)


async def replay_event(db: AsyncSession, event_id: str) -> bool:
    """Run an event's processing again (after it failed for good, say); False if unknown."""
    result = await db.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_id)
        .values(status=EventStatus.PENDING, processed_at=None, last_error=None)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return False
    request_job(db, JobName.PROCESS_STRIPE_EVENT, event_id)
    return True


async def record_event_failure(db: AsyncSession, event_id: str, *, error: str, final: bool) -> None:
    await db.execute(
        update(StripeEvent)
        .where(StripeEvent.id == event_id, StripeEvent.processed_at.is_(None))
        .values(
            attempts=StripeEvent.attempts + 1,
            last_error=error[:1000],
            status=EventStatus.FAILED if final else EventStatus.PENDING,
        )
    )


# Event processing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    text: str
    acted: bool  # False: stale, repeated, or nothing to do (the event is then `ignored`)


def _acted(text: str) -> Outcome:
    return Outcome(text, acted=True)


def _ignored(text: str) -> Outcome:
    return Outcome(text, acted=False)


def _moved(moved: bool, order: Order, done: str) -> Outcome:
    return _acted(done) if moved else _ignored(f"stale: order is {order.status.value}")


Handler = Callable[[AsyncSession, StripeGateway, dict[str, Any], datetime], Awaitable[Outcome]]


async def process_event(
    db: AsyncSession, gateway: StripeGateway, event_id: str, *, now: datetime
) -> None:
    """Apply one stored event, once. Runs in the caller's transaction, which also records that
    the event was handled, so the effect and the record commit together or not at all."""
    event = await db.scalar(select(StripeEvent).where(StripeEvent.id == event_id).with_for_update())
    if event is None or event.processed_at is not None:
        return
    handler = HANDLERS.get(event.type)
    obj: dict[str, Any] = event.payload["data"]["object"]
    outcome = (
        await handler(db, gateway, obj, now)
        if handler
        else _ignored(f"{event.type} is not acted on")
    )
    event.status = EventStatus.PROCESSED if outcome.acted else EventStatus.IGNORED
    event.outcome = outcome.text
    event.attempts += 1
    event.processed_at = now
    event.last_error = None
    log.info("stripe_event_processed", event_id=event_id, type=event.type, outcome=event.outcome)


async def fulfill_checkout(
    db: AsyncSession, gateway: StripeGateway, session_id: str, *, now: datetime
) -> Outcome:
    """The one fulfilment: from the webhook job, the success page and reconciliation. Reads the
    session from Stripe, checks it against the order, and marks the order paid exactly once."""
    session = await gateway.retrieve_checkout(session_id)
    order = await orders.lock_order_by_session(db, session_id)
    if order is None:
        log.error("checkout_for_unknown_order", alert=True, session_id=session_id)
        return _ignored("no order has this checkout session")
    if order.status is not OrderStatus.PENDING:
        return _ignored(f"order already {order.status.value}")
    if session.get("status") != "complete" or session.get("payment_status") != "paid":
        state = f"{session.get('status')}/{session.get('payment_status')}"
        return _ignored(f"session is {state}: not paid yet")
    metadata_order = (session.get("metadata") or {}).get("order_id")
    problems = [
        problem
        for problem, wrong in (
            (
                f"amount {session.get('amount_total')} != {order.total_cents}",
                session.get("amount_total") != order.total_cents,
            ),
            (
                f"currency {session.get('currency')} != {order.currency}",
                session.get("currency") != order.currency,
            ),
            (f"metadata order {metadata_order} != {order.id}", metadata_order != str(order.id)),
        )
        if wrong
    ]
    if problems:
        orders.flag_for_review(order, "paid session does not match: " + "; ".join(problems))
        return _acted("mismatch: flagged for review")
    intent = session.get("payment_intent") or {}
    orders.transition(order, OrderStatus.PAID, reason=f"checkout {session_id} paid", now=now, db=db)
    order.payment_intent_id = intent.get("id") if isinstance(intent, dict) else str(intent)
    order.charge_id = intent.get("latest_charge") if isinstance(intent, dict) else None
    order.paid_at = now
    await orders.remove_purchased_from_cart(db, order)
    request_job(db, JobName.PROVISION_ORDER, str(order.id))
    request_job(db, JobName.SEND_ORDER_RECEIPT, str(order.id))
    return _acted("order paid")


async def _session_completed(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any], now: datetime
) -> Outcome:
    if obj.get("payment_status") != "paid":
        return _ignored("completed unpaid: waiting for the asynchronous payment")
    return await fulfill_checkout(db, gateway, str(obj["id"]), now=now)


async def _async_succeeded(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any], now: datetime
) -> Outcome:
    return await fulfill_checkout(db, gateway, str(obj["id"]), now=now)


async def _move_by_session(
    db: AsyncSession, obj: dict[str, Any], to: OrderStatus, reason: str, now: datetime
) -> Outcome:
    order = await orders.lock_order_by_session(db, str(obj["id"]))
    if order is None:
        return _ignored("no order has this checkout session")
    moved = orders.transition(order, to, reason=reason, now=now, db=db)
    return (
        _acted(f"order {to.value}") if moved else _ignored(f"stale: order is {order.status.value}")
    )


async def _async_failed(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any], now: datetime
) -> Outcome:
    return await _move_by_session(db, obj, OrderStatus.PAYMENT_FAILED, "payment failed", now)


async def _session_expired(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any], now: datetime
) -> Outcome:
    return await _move_by_session(db, obj, OrderStatus.EXPIRED, "checkout session expired", now)


async def _order_of_payment(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any], now: datetime
) -> Order | None:
    """The order a refund, charge or dispute is about, locked. Events arrive in any order: when
    the payment's own completion has not been applied yet, its checkout is fulfilled first (the
    one idempotent fulfilment), so the refund or dispute is never lost."""
    intent = obj.get("payment_intent")
    if not intent:
        return None
    order = await orders.lock_order_by_payment_intent(db, str(intent))
    if order is None:
        session_id = await gateway.checkout_of_payment(str(intent))
        if session_id is not None:
            await fulfill_checkout(db, gateway, session_id, now=now)
            await db.flush()
            order = await orders.lock_order_by_payment_intent(db, str(intent))
    return order


async def _refund_created(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any], now: datetime
) -> Outcome:
    order = await _order_of_payment(db, gateway, obj, now)
    if order is None:
        return _ignored("no order has this payment")
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
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any], now: datetime
) -> Outcome:
    order = await _order_of_payment(db, gateway, obj, now)
    if order is None:
        return _ignored("no order has this payment")
    # Cumulative, so a late or repeated event never lowers it.
    refunded = min(max(order.refunded_cents, int(obj.get("amount_refunded", 0))), order.total_cents)
    order.refunded_cents = refunded
    full = refunded >= order.total_cents
    to = OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED
    moved = orders.transition(order, to, reason=f"{refunded} refunded", now=now, db=db)
    if moved and full:
        await stop_order_instances(db, order.id, reason="order refunded", suspend=False)
    return (
        _acted(f"order {to.value}") if moved else _ignored(f"stale: order is {order.status.value}")
    )


async def _dispute_created(
    db: AsyncSession, gateway: StripeGateway, obj: dict[str, Any], now: datetime
) -> Outcome:
    order = await _order_of_payment(db, gateway, obj, now)
    if order is None:
        return _ignored("no order has this payment")
    moved = orders.transition(order, OrderStatus.DISPUTED, reason="dispute opened", now=now, db=db)
    if moved:
        await stop_order_instances(db, order.id, reason="payment disputed", suspend=True)
    return _moved(moved, order, "order disputed")


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _session_completed,
    "checkout.session.async_payment_succeeded": _async_succeeded,
    "checkout.session.async_payment_failed": _async_failed,
    "checkout.session.expired": _session_expired,
    "refund.created": _refund_created,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
}


# Reconciliation ---------------------------------------------------------------------------------

RECONCILE_AFTER = timedelta(minutes=5)


async def pending_orders_to_reconcile(db: AsyncSession, *, now: datetime) -> list[uuid.UUID]:
    return list(
        await db.scalars(
            select(Order.id)
            .where(
                Order.status == OrderStatus.PENDING,
                Order.checkout_session_id.is_not(None),
                Order.created_at < now - RECONCILE_AFTER,
            )
            .order_by(Order.created_at)
            .limit(200)
        )
    )


async def reconcile_order(
    db: AsyncSession, gateway: StripeGateway, order_id: uuid.UUID, *, now: datetime
) -> str:
    """A pending order whose events went missing: ask Stripe, then fulfil or close it."""
    order = await orders.lock_order(db, order_id)
    if order is None or order.status is not OrderStatus.PENDING or not order.checkout_session_id:
        return "nothing to do"
    session = await gateway.retrieve_checkout(order.checkout_session_id)
    if session.get("status") == "complete" and session.get("payment_status") == "paid":
        return (await fulfill_checkout(db, gateway, order.checkout_session_id, now=now)).text
    if session.get("status") == "expired":
        orders.transition(order, OrderStatus.EXPIRED, reason="reconciled: expired", now=now, db=db)
        return "order expired"
    return f"session is {session.get('status')}/{session.get('payment_status')}"


# Refunds ----------------------------------------------------------------------------------------


class NotRefundable(AppError):
    status = 409
    code = "not_refundable"


async def request_refund(
    db: AsyncSession,
    gateway: StripeGateway,
    *,
    order_id: uuid.UUID,
    amount_cents: int | None,
    idempotency_key: str | None,
) -> tuple[str, int]:
    """Ask Stripe to refund (part of) a paid order; its webhooks then update the order.

    The Stripe idempotency key comes from the order and the caller's key, or, without one, from
    what is refunded so far, so a repeated request refunds once."""
    order = await orders.lock_order(db, order_id)
    if order is None:
        raise NotFound("No such order.")
    refundable = order.total_cents - order.refunded_cents
    if order.payment_intent_id is None or order.status not in REFUNDABLE or refundable <= 0:
        raise NotRefundable(f"An order that is {order.status.value} cannot be refunded.")
    amount = refundable if amount_cents is None else amount_cents
    if amount > refundable:
        raise NotRefundable(f"At most {refundable} can still be refunded.")
    suffix = idempotency_key or f"after-{order.refunded_cents}-amount-{amount}"
    refund_id = await gateway.refund(
        payment_intent_id=order.payment_intent_id,
        amount_cents=amount,
        key=f"refund-{order.id}-{suffix}",
    )
    return refund_id, amount


REFUNDABLE = {OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.DISPUTED}
