"""What must hold after any storm, whatever faults it met, read from both sides: our database
(orders, lines, instances, the webhook inbox, refunds) and Stripe (the emulator, through the
official SDK). The fault tests share these checks.

1. Every paid Checkout Session has exactly one order, paid once (one `paid` transition), for the
   session's amount; no order is paid without a paid session.
2. Every line of a paid order has exactly `quantity` instances (indexes 0…quantity-1), running,
   or terminated once the order is fully refunded; no unpaid order has an instance.
3. Every event Stripe created is stored once and processed or ignored; none is pending or failed.
4. The ledger: what our paid orders took minus our refunds equals Stripe's succeeded charges minus
   what Stripe refunded, to the cent, and per order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy import select

from computebill.devserver.scratch import Sessions
from computebill.instances.models import Instance, InstanceStatus
from computebill.orders.models import Order, OrderLine, OrderStatus, OrderStatusChange, Refund
from computebill.payments.models import EventStatus, StripeEvent
from tests.support.stripe import STRIPE_KEY

JSON = dict[str, Any]
DONE = frozenset({EventStatus.PROCESSED, EventStatus.IGNORED})
PAID_ONCE = frozenset(
    {
        OrderStatus.PAID,
        OrderStatus.PARTIALLY_REFUNDED,
        OrderStatus.REFUNDED,
        OrderStatus.DISPUTED,
    }
)


@dataclass(frozen=True)
class StripeSide:
    sessions: dict[str, JSON]  # by id
    charges: dict[str, JSON]  # every charge an event mentions, as it is now
    events: dict[str, JSON]  # by id

    @property
    def paid_sessions(self) -> dict[str, JSON]:
        return {i: s for i, s in self.sessions.items() if s["payment_status"] == "paid"}

    @property
    def net_cents(self) -> int:
        taken = [c for c in self.charges.values() if c["status"] == "succeeded"]
        return sum(int(c["amount"]) - int(c["amount_refunded"]) for c in taken)


@dataclass(frozen=True)
class OurSide:
    orders: dict[uuid.UUID, Order]
    lines: dict[uuid.UUID, list[OrderLine]]  # by order
    instances: dict[uuid.UUID, list[Instance]]  # by order
    paid_transitions: Counter[uuid.UUID]  # by order
    refunds: dict[uuid.UUID, list[Refund]]  # by order
    events: dict[str, StripeEvent]

    @property
    def paid_orders(self) -> list[Order]:
        return [o for o in self.orders.values() if o.paid_at is not None]

    @property
    def net_cents(self) -> int:
        refunded = sum(r.amount_cents for rs in self.refunds.values() for r in rs)
        return sum(o.total_cents for o in self.paid_orders) - refunded


def _stripe(emulator_url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        STRIPE_KEY, base_addresses={"api": emulator_url}, max_network_retries=2
    )


def _read_stripe(emulator_url: str) -> StripeSide:
    client = _stripe(emulator_url)
    events = {e.id: e.to_dict() for e in client.v1.events.list({"limit": 100}).auto_paging_iter()}
    sessions = {
        s.id: s.to_dict()
        for s in client.v1.checkout.sessions.list({"limit": 100}).auto_paging_iter()
    }
    charge_ids = {
        str(event["data"]["object"]["id"])
        for event in events.values()
        if str(event["type"]).startswith("charge.") and event["type"] != "charge.dispute.created"
    }
    charges = {i: client.v1.charges.retrieve(i).to_dict() for i in sorted(charge_ids)}
    return StripeSide(sessions=sessions, charges=charges, events=events)


async def read_stripe(emulator_url: str) -> StripeSide:
    """Stripe's sessions, charges and events, through the official SDK."""
    return await asyncio.to_thread(_read_stripe, emulator_url)


def _by_order(rows: list[Any]) -> dict[uuid.UUID, list[Any]]:
    grouped: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.order_id].append(row)
    return grouped


async def read_ours(db: Sessions) -> OurSide:
    async with db() as session:
        orders = {o.id: o for o in await session.scalars(select(Order))}
        lines = _by_order(list(await session.scalars(select(OrderLine))))
        instances = _by_order(list(await session.scalars(select(Instance))))
        refunds = _by_order(list(await session.scalars(select(Refund))))
        paid = Counter(
            await session.scalars(
                select(OrderStatusChange.order_id).where(
                    OrderStatusChange.to_status == OrderStatus.PAID
                )
            )
        )
        events = {e.id: e for e in await session.scalars(select(StripeEvent))}
    return OurSide(
        orders=orders,
        lines=lines,
        instances=instances,
        paid_transitions=paid,
        refunds=refunds,
        events=events,
    )


def _order_problems(stripe_side: StripeSide, ours: OurSide) -> list[str]:
    problems: list[str] = []
    by_session: dict[str, list[Order]] = defaultdict(list)
    for order in ours.orders.values():
        if order.checkout_session_id is not None:
            by_session[order.checkout_session_id].append(order)
    for session_id, session in stripe_side.paid_sessions.items():
        paid = [o for o in by_session.get(session_id, []) if o.paid_at is not None]
        if len(paid) != 1:
            problems.append(f"paid session {session_id} has {len(paid)} paid orders")
            continue
        order = paid[0]
        if order.status not in PAID_ONCE:
            problems.append(f"order {order.id} of paid session {session_id} is {order.status}")
        if ours.paid_transitions[order.id] != 1:
            times = ours.paid_transitions[order.id]
            problems.append(f"order {order.id} became paid {times} times")
        if (session.get("metadata") or {}).get("order_id") != str(order.id):
            problems.append(f"session {session_id} names another order than {order.id}")
        if session["amount_total"] != order.total_cents:
            problems.append(f"order {order.id}: {order.total_cents} != {session['amount_total']}")
    for order in ours.orders.values():
        session_paid = order.checkout_session_id in stripe_side.paid_sessions
        if (order.paid_at is not None or order.status in PAID_ONCE) and not session_paid:
            problems.append(f"order {order.id} is {order.status} but Stripe has no payment")
        if order.paid_at is None and ours.paid_transitions[order.id]:
            problems.append(f"order {order.id} has a paid transition but no paid_at")
    return problems


def _instance_problems(ours: OurSide) -> list[str]:
    problems: list[str] = []
    for order in ours.orders.values():
        instances = ours.instances.get(order.id, [])
        if order.paid_at is None:
            if instances:
                problems.append(f"unpaid order {order.id} ({order.status}) has instances")
            continue
        for line in ours.lines.get(order.id, []):
            indexes = sorted(i.index for i in instances if i.order_line_id == line.id)
            if indexes != list(range(line.quantity)):
                problems.append(
                    f"order {order.id} line {line.position}: quantity {line.quantity}, "
                    f"instances {indexes}"
                )
        expected = (
            InstanceStatus.TERMINATED
            if order.status is OrderStatus.REFUNDED
            else InstanceStatus.RUNNING
        )
        unsettled = [i.status.value for i in instances if i.status is not expected]
        if unsettled:
            problems.append(f"order {order.id} ({order.status}): instances {unsettled}")
    return problems


def _event_problems(stripe_side: StripeSide, ours: OurSide) -> list[str]:
    problems: list[str] = []
    missing = sorted(set(stripe_side.events) - set(ours.events))
    if missing:
        problems.append(f"{len(missing)} events Stripe sent are not stored: {missing[:5]}")
    strangers = sorted(set(ours.events) - set(stripe_side.events))
    if strangers:
        problems.append(f"stored events Stripe never created: {strangers[:5]}")
    open_events = sorted(
        (e.id, e.type, e.status.value, e.last_error)
        for e in ours.events.values()
        if e.status not in DONE
    )
    if open_events:
        problems.append(f"{len(open_events)} events not handled: {open_events[:5]}")
    return problems


def _ledger_problems(stripe_side: StripeSide, ours: OurSide) -> list[str]:
    problems: list[str] = []
    if ours.net_cents != stripe_side.net_cents:
        problems.append(f"ledger: ours {ours.net_cents} != Stripe's {stripe_side.net_cents}")
    charges_by_intent = {
        str(c["payment_intent"]): c
        for c in stripe_side.charges.values()
        if c["status"] == "succeeded"
    }
    for order in ours.paid_orders:
        charge = charges_by_intent.get(str(order.payment_intent_id))
        if charge is None:
            problems.append(f"paid order {order.id} has no succeeded charge")
            continue
        refunded = sum(r.amount_cents for r in ours.refunds.get(order.id, []))
        if charge["amount"] != order.total_cents:
            problems.append(f"order {order.id}: charged {charge['amount']} != {order.total_cents}")
        if not refunded == order.refunded_cents == charge["amount_refunded"]:
            problems.append(
                f"order {order.id}: refunds {refunded}, refunded_cents {order.refunded_cents}, "
                f"Stripe refunded {charge['amount_refunded']}"
            )
    return problems


def violations(stripe_side: StripeSide, ours: OurSide) -> list[str]:
    """Every broken invariant, described; empty when all hold."""
    return [
        *_order_problems(stripe_side, ours),
        *_instance_problems(ours),
        *_event_problems(stripe_side, ours),
        *_ledger_problems(stripe_side, ours),
    ]


async def assert_converges(
    db: Sessions, emulator_url: str, *, within: float
) -> tuple[StripeSide, OurSide]:
    """Both sides once every invariant holds; fails, listing what is broken, when they do not
    within `within` seconds (polling: faults delay work, and the sweeps find it again)."""
    deadline = time.monotonic() + within
    while True:
        stripe_side = await read_stripe(emulator_url)
        ours = await read_ours(db)
        problems = violations(stripe_side, ours)
        if not problems:
            return stripe_side, ours
        if time.monotonic() > deadline:
            shown = "\n".join(problems[:40])
            raise AssertionError(f"{len(problems)} invariants broken after {within} s:\n{shown}")
        await asyncio.sleep(2)
