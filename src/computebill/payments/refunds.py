"""Refunds an admin asks for: Stripe refunds, and its webhooks then update the order."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from computebill.credits.models import EntryKind
from computebill.credits.service import credited_millicents
from computebill.errors import AppError, NotFound
from computebill.money import MILLICENTS_PER_CENT
from computebill.orders.models import Order, OrderStatus
from computebill.payments.gateway import StripeGateway

REFUNDABLE = {OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.DISPUTED}


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
    what is refunded so far, so a repeated request refunds once. Nothing here writes, so no row
    is locked while Stripe (with its retries) is asked: a lock would not change the key, since
    the refunded amount moves only when Stripe's webhook arrives, and Stripe itself refuses a
    refund beyond what the payment has left."""
    order = await db.get(Order, order_id)
    if order is None:
        raise NotFound("No such order.")
    if order.payment_intent_id is None or order.status not in REFUNDABLE:
        raise NotRefundable(f"An order that is {order.status.value} cannot be refunded.")
    # Unused time its owner stopped early was given back as credit: never refunded as well.
    credited = await credited_millicents(db, order_id=order.id, kind=EntryKind.UNUSED_TIME)
    credited_cents = -(-credited // MILLICENTS_PER_CENT)
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
