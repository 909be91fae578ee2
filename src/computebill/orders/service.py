"""Orders: their lines, history and refunds, moved forward only by verified payment events (the
payments domain makes them from the cart at checkout and applies the events)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

import structlog
from sqlalchemy import ColumnElement, SQLColumnExpression, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.auth.models import User
from computebill.db import shown_columns
from computebill.errors import AppError, NotFound
from computebill.metrics import REFUNDS
from computebill.money import format_money
from computebill.orders.models import Order, OrderLine, OrderStatus, OrderStatusChange, Refund
from computebill.paging import NewestFirst, newest_first, read_page

log = structlog.get_logger(__name__)

CHECKOUT_LIFETIME = timedelta(minutes=30)
# A pending order's open checkout is offered again only if the customer has time to pay.
REUSE_MARGIN = timedelta(minutes=5)

# Forward-only transitions (docs/architecture.md §4); anything else is a stale or duplicate event.
ALLOWED = {
    OrderStatus.PENDING: {
        OrderStatus.PAID,
        OrderStatus.EXPIRED,
        OrderStatus.CANCELED,
        OrderStatus.PAYMENT_FAILED,
    },
    OrderStatus.PAID: {
        OrderStatus.PARTIALLY_REFUNDED,
        OrderStatus.REFUNDED,
        OrderStatus.DISPUTED,
    },
    OrderStatus.PARTIALLY_REFUNDED: {
        OrderStatus.PARTIALLY_REFUNDED,
        OrderStatus.REFUNDED,
        OrderStatus.DISPUTED,
    },
    # A partial refund while disputed keeps the order disputed (its amount is still recorded);
    # only a full refund settles it. No way back from DISPUTED, so replays cannot flip it.
    OrderStatus.DISPUTED: {OrderStatus.REFUNDED},
}


def transition(
    order: Order, to: OrderStatus, *, reason: str, now: datetime, db: AsyncSession
) -> bool:
    """Move the order forward; False (and nothing changes) when that would not be forward."""
    if to not in ALLOWED.get(order.status, set()):
        log.info(
            "order_transition_ignored",
            order_id=str(order.id),
            status=order.status.value,
            to=to.value,
            reason=reason,
        )
        return False
    db.add(
        OrderStatusChange(
            order_id=order.id, from_status=order.status, to_status=to, reason=reason, changed_at=now
        )
    )
    order.status = to
    return True


async def order_lines(db: AsyncSession, order_id: uuid.UUID) -> list[OrderLine]:
    return list(
        await db.scalars(
            select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.position)
        )
    )


def is_extension(order_id: SQLColumnExpression[uuid.UUID] | uuid.UUID) -> ColumnElement[bool]:
    """Whether the order buys hours for an existing instance (an extension) rather than new
    ones: its line names the instance. Given `Order.id`, a condition on each order."""
    return (
        select(OrderLine.id)
        .where(OrderLine.order_id == order_id, OrderLine.extends_instance_id.is_not(None))
        .exists()
    )


async def extends_an_instance(db: AsyncSession, order_id: uuid.UUID) -> bool:
    return bool(await db.scalar(select(is_extension(order_id))))


async def _lock_order_where(db: AsyncSession, condition: ColumnElement[bool]) -> Order | None:
    # Fresh from the row, not the session's copy: the caller re-checks what it read unlocked.
    return await db.scalar(
        select(Order).where(condition).with_for_update().execution_options(populate_existing=True)
    )


async def lock_order(db: AsyncSession, order_id: uuid.UUID) -> Order | None:
    return await _lock_order_where(db, Order.id == order_id)


async def lock_order_by_session(db: AsyncSession, session_id: str) -> Order | None:
    return await _lock_order_where(db, Order.checkout_session_id == session_id)


async def lock_order_by_payment_intent(db: AsyncSession, payment_intent_id: str) -> Order | None:
    return await _lock_order_where(db, Order.payment_intent_id == payment_intent_id)


def flag_for_review(order: Order, reason: str) -> None:
    order.needs_review = True
    order.review_reason = reason[:500]
    log.error("order_needs_review", alert=True, order_id=str(order.id), reason=reason)


async def record_refund(
    db: AsyncSession, order: Order, *, refund_id: str, amount_cents: int, status: str, now: datetime
) -> None:
    exists = await db.scalar(select(Refund.id).where(Refund.refund_id == refund_id))
    if exists is None:
        REFUNDS.count(db, kind="order", currency=order.currency, cents=amount_cents)
        db.add(
            Refund(
                order_id=order.id,
                refund_id=refund_id,
                amount_cents=amount_cents,
                status=status,
                created_at=now,
            )
        )


class OrderSummary(NamedTuple):
    """An order as its list shows it (the API's `OrderSummaryOut`, and the history page's badge
    for review), read without the ORM; its id as text."""

    id: str
    status: OrderStatus
    currency: str
    total_cents: int
    refunded_cents: int
    created_at: datetime
    paid_at: datetime | None
    checkout_url: str | None
    checkout_expires_at: datetime | None
    needs_review: bool
    user_id: str


_orders = Order.__table__.c


def _order_list(*conditions: ColumnElement[bool]) -> NewestFirst:
    """The orders that meet `conditions`, newest first, a page at a time."""
    return newest_first(
        select(*shown_columns(Order.__table__, OrderSummary._fields)).where(*conditions),
        _orders.created_at,
        _orders.id,
    )


# The order list, newest first: a page of an owner's orders, then the next one from the
# (created_at, id) of the previous page's last order (docs/architecture.md §3, reads on hot
# paths).
_ORDER_LIST = _order_list(_orders.user_id == bindparam("user_id"))


@dataclass(frozen=True, slots=True)
class OrderPage:
    orders: list[OrderSummary]
    next_cursor: str | None  # where the next (older) page starts; None on the last page


async def order_page(
    db: AsyncConnection, *, user_id: uuid.UUID, limit: int, cursor: str | None
) -> OrderPage:
    """One page of the user's orders, newest first, from the API's or the page's cursor: one
    statement, read without the ORM (a list only shows)."""
    page, next_cursor = await read_page(
        db, _ORDER_LIST, {"user_id": user_id}, make=OrderSummary._make, limit=limit, cursor=cursor
    )
    return OrderPage(orders=page, next_cursor=next_cursor)


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """Which orders an operator lists: None matches any. `since` and `until` bound the time the
    order was made (from `since`, before `until`)."""

    status: OrderStatus | None = None
    needs_review: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    user_id: uuid.UUID | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.status is not None:
            conditions.append(_orders.status == self.status)
        if self.needs_review is not None:
            # The column itself, not a comparison with a parameter: the partial index of the
            # orders to review answers it.
            flagged = _orders.needs_review
            conditions.append(flagged if self.needs_review else ~flagged)
        if self.since is not None:
            conditions.append(_orders.created_at >= self.since)
        if self.until is not None:
            conditions.append(_orders.created_at < self.until)
        if self.user_id is not None:
            conditions.append(_orders.user_id == self.user_id)
        return conditions


class BadOrderFilter(AppError):
    status = 422
    code = "invalid_filter"


def order_filter(
    *,
    status: OrderStatus | None = None,
    needs_review: bool | None = None,
    since: date | None = None,
    until: date | None = None,
    user_id: uuid.UUID | None = None,
) -> OrderFilter:
    """The filter of the console's order list (the API's and the page's): `since` and `until`
    are UTC days, both included."""
    if since is not None and until is not None and since > until:
        raise BadOrderFilter("`since` is after `until`.")
    return OrderFilter(
        status=status,
        needs_review=needs_review,
        since=None if since is None else datetime.combine(since, time(), UTC),
        # The day after `until` (none after the last day there is).
        until=None
        if until is None or until == date.max
        else datetime.combine(until + timedelta(days=1), time(), UTC),
        user_id=user_id,
    )


async def filtered_order_page(
    db: AsyncConnection, filters: OrderFilter, *, limit: int, cursor: str | None
) -> OrderPage:
    """One page of every customer's orders that pass `filters`, newest first (the console's
    list). Its statement is built for the filters given, so it is not prepared once as the
    customer's own list is: operators list orders seldom."""
    page, next_cursor = await read_page(
        db,
        _order_list(*filters.conditions()),
        {},
        make=OrderSummary._make,
        limit=limit,
        cursor=cursor,
    )
    return OrderPage(orders=page, next_cursor=next_cursor)


def open_checkout_url(order: Order, *, now: datetime) -> str | None:
    """Where the customer can still pay a pending order, if its checkout stays open long enough."""
    if (
        order.status is OrderStatus.PENDING
        and order.checkout_url is not None
        and order.checkout_expires_at is not None
        and order.checkout_expires_at > now + REUSE_MARGIN
    ):
        return order.checkout_url
    return None


@dataclass(frozen=True, slots=True)
class OrderDetail:
    order: Order
    lines: list[OrderLine]
    history: list[OrderStatusChange]
    refunds: list[Refund]


async def get_order(
    db: AsyncSession, *, user_id: uuid.UUID | None, order_id: uuid.UUID
) -> OrderDetail:
    """The order with everything about it; 404 unless it is the user's (None: any user's)."""
    query = select(Order).where(Order.id == order_id)
    if user_id is not None:
        query = query.where(Order.user_id == user_id)
    order = await db.scalar(query)
    if order is None:
        raise NotFound("No such order.")
    history = await db.scalars(
        select(OrderStatusChange)
        .where(OrderStatusChange.order_id == order.id)
        .order_by(OrderStatusChange.id)
    )
    refunds = await db.scalars(
        select(Refund).where(Refund.order_id == order.id).order_by(Refund.created_at)
    )
    return OrderDetail(
        order=order,
        lines=await order_lines(db, order.id),
        history=list(history),
        refunds=list(refunds),
    )


@dataclass(frozen=True, slots=True)
class Receipt:
    recipient: str
    subject: str
    body: str


async def receipt(db: AsyncSession, order_id: uuid.UUID) -> Receipt:
    """The receipt of a paid order, as plain text."""
    order = await db.get(Order, order_id)
    if order is None or order.paid_at is None:
        raise NotFound(f"Order {order_id} is not paid.")
    email = await db.scalar(select(User.email).where(User.id == order.user_id))
    lines = await order_lines(db, order.id)
    rows = [
        f"  {line.description.text} · {line.description.machines} · "
        f"{format_money(line.line_total_cents, order.currency)}"
        for line in lines
    ]
    extension = any(line.extends_instance_id is not None for line in lines)
    body = "\n".join(
        [
            "Thank you for your order. "
            + (
                "Your machine's paid time is extended."
                if extension
                else "Your instances are being prepared."
            ),
            "",
            f"Order {order.id}, paid {order.paid_at:%Y-%m-%d %H:%M} UTC",
            *rows,
            "",
            f"Total: {format_money(order.total_cents, order.currency)}",
            f"Payment: {order.payment_intent_id or 'credit balance'}",
        ]
    )
    return Receipt(
        recipient=str(email),
        subject=f"Receipt for your order {str(order.id)[:8]}",
        body=body,
    )
