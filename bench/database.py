"""What the benchmarks read and write in the run's database directly (never through the app):
orders made without a checkout, carts emptied, the webhook inbox's row count, the timestamps the
platform stores, and a watcher that tells when orders have reached a state.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.cart.models import CartItem
from computebill.catalog.models import GpuModel, PricingPolicy
from computebill.catalog.pricing import Configuration, Rates, price
from computebill.devserver.scratch import Sessions
from computebill.instances.models import Instance, InstanceStatus
from computebill.mail.models import OutboxEmail
from computebill.orders.models import Order, OrderLine, OrderStatus

VERIFY_LINK = "/verify-email?token="


async def verification_token(db: Sessions, email: str) -> str:
    """The token of the newest e-mail verification link sent to `email`, from the outbox."""
    async with db() as session:
        body = await session.scalar(
            select(OutboxEmail.body)
            .where(OutboxEmail.recipient == email.lower(), OutboxEmail.body.contains(VERIFY_LINK))
            .order_by(OutboxEmail.created_at.desc())
            .limit(1)
        )
    match = re.search(re.escape(VERIFY_LINK) + r"([A-Za-z0-9_-]+)", body or "")
    if match is None:
        raise LookupError(f"no verification e-mail to {email}")
    return match.group(1)


async def user_id(db: Sessions, email: str) -> uuid.UUID:
    async with db() as session:
        found = await session.scalar(select(User.id).where(User.email == email.lower()))
    if found is None:
        raise LookupError(f"no account {email}")
    return found


@dataclass(frozen=True, slots=True)
class LineSpec:
    gpu: str
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int
    quantity: int
    region: str = "us-east-1"


async def insert_paid_orders(
    db: Sessions, owner: uuid.UUID, count: int, lines: Sequence[LineSpec]
) -> list[uuid.UUID]:
    """`count` orders in `paid` (as a webhook would have left them, without a checkout), each
    with `lines`, priced from the catalog; their ids, oldest first."""
    now = datetime.now(UTC)
    async with db() as session, session.begin():
        policy = await session.get(PricingPolicy, 1)
        models = {m.slug: m for m in await session.scalars(select(GpuModel))}
        if policy is None:
            raise LookupError("the catalog is not seeded")
        ids = []
        for _ in range(count):
            order = Order(
                id=uuid.uuid4(),
                user_id=owner,
                status=OrderStatus.PAID,
                currency=policy.currency,
                total_cents=0,
                refunded_cents=0,
                cart_fingerprint="bench",
                paid_at=now,
            )
            session.add(order)
            for position, spec in enumerate(lines):
                model = models[spec.gpu]
                rates = Rates(
                    gpu_hour_cents=model.price_per_gpu_hour_cents,
                    vcpu_hour_millicents=policy.vcpu_hour_millicents,
                    storage_gb_hour_millicents=policy.storage_gb_hour_millicents,
                )
                quoted = price(
                    rates,
                    Configuration(
                        spec.gpu_count, spec.vcpus, spec.storage_gb, spec.hours, spec.quantity
                    ),
                )
                session.add(
                    OrderLine(
                        order_id=order.id,
                        position=position,
                        gpu_model_id=model.id,
                        gpu_slug=model.slug,
                        gpu_name=model.name,
                        gpu_count=spec.gpu_count,
                        vcpus=spec.vcpus,
                        storage_gb=spec.storage_gb,
                        hours=spec.hours,
                        region=spec.region,
                        quantity=spec.quantity,
                        gpu_hour_cents=rates.gpu_hour_cents,
                        vcpu_hour_millicents=rates.vcpu_hour_millicents,
                        storage_gb_hour_millicents=rates.storage_gb_hour_millicents,
                        unit_total_cents=quoted.unit_total_cents,
                        line_total_cents=quoted.line_total_cents,
                    )
                )
                order.total_cents += quoted.line_total_cents
            ids.append(order.id)
    return ids


async def empty_carts(db: Sessions, owners: Collection[uuid.UUID]) -> None:
    """Take every item out of these users' carts (between phases, not through the app), under
    the cart's lock (the user's row), so that an add still in flight from the warm-up waits
    instead of updating a line deleted under it."""
    async with db() as session, session.begin():
        await session.execute(
            select(User.id).where(User.id.in_(list(owners))).order_by(User.id).with_for_update()
        )
        await session.execute(delete(CartItem).where(CartItem.user_id.in_(list(owners))))


async def count_events(db: Sessions, id_prefix: str) -> int:
    """Rows in the webhook inbox (`stripe_events`) whose id starts with `id_prefix`."""
    async with db() as session:
        counted = await session.scalar(
            text("SELECT count(*) FROM stripe_events WHERE id LIKE :pattern"),
            {"pattern": id_prefix.replace("_", r"\_") + "%"},
        )
    return int(counted or 0)


@dataclass(frozen=True, slots=True)
class PaymentTimes:
    event_stored: datetime  # stripe_events.received_at of its checkout.session.completed
    paid: datetime  # order_status_changes.changed_at of its change to `paid`


async def payment_times(db: Sessions, order_ids: Collection[str]) -> dict[str, PaymentTimes]:
    """Per order: when the app received (and stored) its `checkout.session.completed` event, and
    the time its change to `paid` carries (the fulfilling job's clock when it started)."""
    async with db() as session:
        rows = await session.execute(
            text(
                """
                SELECT o.id::text, min(e.received_at), min(c.changed_at)
                FROM orders o
                JOIN order_status_changes c ON c.order_id = o.id AND c.to_status = 'paid'
                JOIN stripe_events e ON e.type = 'checkout.session.completed'
                    AND e.payload -> 'data' -> 'object' ->> 'id' = o.checkout_session_id
                WHERE o.id::text = ANY(:ids)
                GROUP BY o.id
                """
            ),
            {"ids": list(order_ids)},
        )
        return {str(order): PaymentTimes(stored, paid) for order, stored, paid in rows.all()}


async def instance_counts(db: Sessions) -> dict[InstanceStatus, int]:
    async with db() as session:
        rows = await session.execute(
            select(Instance.status, func.count()).group_by(Instance.status)
        )
        return {status: int(count) for status, count in rows.tuples().all()}


# Which of these orders have got there: the watcher's question, asked of the database.
DoneQuery = Callable[[AsyncSession, list[uuid.UUID]], Awaitable[set[uuid.UUID]]]


async def paid_orders(session: AsyncSession, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    found = await session.scalars(
        select(Order.id).where(Order.id.in_(ids), Order.status == OrderStatus.PAID)
    )
    return set(found)


def orders_running(instances_per_order: int) -> DoneQuery:
    """Orders all of whose `instances_per_order` instances are `running`."""

    async def done(session: AsyncSession, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        found = await session.scalars(
            select(Instance.order_id)
            .where(Instance.order_id.in_(ids), Instance.status == InstanceStatus.RUNNING)
            .group_by(Instance.order_id)
            .having(func.count() >= instances_per_order)
        )
        return {order_id for order_id in found if order_id is not None}

    return done


class Watcher:
    """Tells when orders have reached a state: one query every `every` seconds for all the
    orders waited on (not one per waiter), while anybody waits."""

    def __init__(self, db: Sessions, done: DoneQuery, every: float) -> None:
        self._db = db
        self._done = done
        self._every = every
        self._waiting: dict[uuid.UUID, asyncio.Future[datetime]] = {}
        self._wake = asyncio.Event()

    async def wait(self, order_id: uuid.UUID, within: float) -> datetime:
        """Until the order is there (TimeoutError after `within` seconds). Returns when the
        query that first saw it there started: its change committed before that, and after the
        query before it started (`every` seconds earlier, plus that query's own time)."""
        future = self._waiting.setdefault(order_id, asyncio.get_running_loop().create_future())
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), within)
        finally:
            if self._waiting.get(order_id) is future and not future.done():
                del self._waiting[order_id]

    async def _poll(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            ids = list(self._waiting)
            asked_at = datetime.now(UTC)
            try:
                async with self._db() as session:
                    done = await self._done(session, ids)
            except Exception as error:  # every waiter fails, not the benchmark
                for order_id in ids:
                    future = self._waiting.pop(order_id, None)
                    if future is not None and not future.done():
                        future.set_exception(error)
                done = set()
            for order_id in done:
                future = self._waiting.pop(order_id, None)
                if future is not None and not future.done():
                    future.set_result(asked_at)
            await asyncio.sleep(self._every)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Watcher]:
        task = asyncio.create_task(self._poll())
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def insert_running_instances(db: Sessions, order_id: uuid.UUID, count: int) -> None:
    """`count` running instances of this paid order's first line (as provisioning would have
    left them, without a worker), for the owner's instance list."""
    now = datetime.now(UTC)
    async with db() as session, session.begin():
        order = await session.get(Order, order_id)
        line = await session.scalar(
            select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.position)
        )
        if order is None or line is None:
            raise LookupError(f"no order {order_id} with a line")
        for index in range(count):
            session.add(
                Instance(
                    user_id=order.user_id,
                    order_id=order_id,
                    order_line_id=line.id,
                    index=index,
                    name=f"bench-{index}",
                    gpu_slug=line.gpu_slug,
                    gpu_name=line.gpu_name,
                    gpu_count=line.gpu_count,
                    vcpus=line.vcpus,
                    storage_gb=line.storage_gb,
                    region=line.region,
                    paid_seconds=line.hours * 3600,
                    paid_cents=line.unit_total_cents,
                    status=InstanceStatus.RUNNING,
                    provider_id=f"bench-{uuid.uuid4()}",
                    ip_address=f"10.0.0.{index + 1}",
                    ssh_user="ubuntu",
                    ssh_port=22,
                    launch_requested_at=now,
                    started_at=now,
                    expires_at=now + timedelta(seconds=line.hours * 3600),
                )
            )
