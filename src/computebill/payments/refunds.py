"""Refunds an admin asks for: Stripe refunds, and its webhooks then update the order."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.audit import service as audit
from computebill.credits.models import EntryKind
from computebill.credits.service import credited_millicents
from computebill.errors import AppError, NotFound
from computebill.invoices.models import Invoice
from computebill.money import MILLICENTS_PER_CENT
from computebill.orders.models import Order, OrderStatus
from computebill.payments.gateway import StripeGateway

REFUNDABLE = {OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.DISPUTED}


class NotRefundable(AppError):
    status = 409
    code = "not_refundable"


async def _credited_cents(db: AsyncSession, order: Order) -> int:
    # Unused time its owner stopped early was given back as credit: never refunded as well.
    credited = await credited_millicents(db, order_id=order.id, kind=EntryKind.UNUSED_TIME)
    return -(-credited // MILLICENTS_PER_CENT)


async def refundable_cents(db: AsyncSession, order: Order) -> int:
    """What of a refundable order can still be refunded: its total less what was refunded and
    what came back as credit for unused time; 0 for any other order."""
    if order.payment_intent_id is None or order.status not in REFUNDABLE:
        return 0
    credited_cents = await _credited_cents(db, order)
    return max(order.total_cents - order.refunded_cents - credited_cents, 0)


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
    what is refunded so far, so a repeated request refunds once. Nothing here writes, so no row
    is locked while Stripe (with its retries) is asked: a lock would not change the key, since
    the refunded amount moves only when Stripe's webhook arrives, and Stripe itself refuses a
    refund beyond what the payment has left."""
    order = await db.get(Order, order_id)
    if order is None:
        raise NotFound("No such order.")
    if order.payment_intent_id is None or order.status not in REFUNDABLE:
        raise NotRefundable(f"An order that is {order.status.value} cannot be refunded.")
    credited_cents = await _credited_cents(db, order)
    refundable = order.total_cents - order.refunded_cents - credited_cents
    amount = refundable if amount_cents is None else amount_cents
    if amount > refundable or refundable <= 0:
        given = f" ({credited_cents} came back as credit for unused time)" if credited_cents else ""
        raise NotRefundable(f"At most {max(refundable, 0)} can still be refunded{given}.")
    suffix = idempotency_key or f"after-{order.refunded_cents}-amount-{amount}"
    refund_id = await gateway.refund(
        payment_intent_id=order.payment_intent_id,
        amount_cents=amount,
        key=f"refund-{order.id}-{suffix}",
    )
    return refund_id, amount


async def refund_audited(
    db: AsyncSession,
    gateway: StripeGateway,
    *,
    order_id: uuid.UUID,
    amount_cents: int | None,
    reason: str | None,
    idempotency_key: str | None,
    actor: audit.Actor,
    now: datetime,
) -> tuple[str, int]:
    """An admin's refund (the API's and the console page's): asked of Stripe, then recorded in
    the audit log with its reason. The refund id and the amount."""
    refund_id, amount = await request_refund(
        db, gateway, order_id=order_id, amount_cents=amount_cents, idempotency_key=idempotency_key
    )
    await audit.record(
        db,
        actor,
        audit.AuditAction.ORDER_REFUNDED,
        target_type="order",
        target_id=str(order_id),
        after={"refund_id": refund_id, "amount_cents": amount},
        reason=reason,
        now=now,
    )
    return refund_id, amount


async def paid_with(db: AsyncSession, order_id: uuid.UUID) -> str | None:
    """How the order was paid, as its invoice names it ("Visa •••• 4242"): where a refund goes."""
    return await db.scalar(select(Invoice.payment_method).where(Invoice.order_id == order_id))
