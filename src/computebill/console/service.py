"""The console's own figures and actions: the overview (money in, GPU time sold and used, live
instances, open problems) and ending a customer's sessions, shared by the API and the pages.

Every figure is an aggregate computed in the database, a handful of statements in all: no list
of orders, instances or ledger entries is ever loaded to be counted here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Table,
    bindparam,
    extract,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.audit import service as audit
from computebill.auth import service as accounts
from computebill.auth.models import AuthEvent, AuthSession, User
from computebill.auth.revocations import RevocationList
from computebill.credits.models import (
    CreditAccount,
    CreditEntry,
    CreditTopUp,
    EntryKind,
    TopUpStatus,
)
from computebill.credits.service import ListedEntry, balance, entries_page
from computebill.instances.models import (
    RUN_END_SQL,
    Instance,
    InstanceStatus,
    InstanceStatusChange,
)
from computebill.instances.service import ListedInstance, list_instances
from computebill.money import MILLICENTS_PER_CENT
from computebill.orders.models import Order, OrderLine, Refund
from computebill.orders.service import OrderSummary, order_page
from computebill.payments.models import EventStatus, StripeEvent

# The overview's windows, each ending now: since UTC midnight, the last 7 and the last 30 days.
WINDOWS = ("today", "last_7_days", "last_30_days")
# An instance still provisioning or stopping this long after it entered that status is stuck.
STUCK_AFTER = timedelta(minutes=30)
# The accounts with a negative balance the overview lists (the worst first).
NEGATIVE_LISTED = 20

_orders = cast(Table, Order.__table__)
_lines = cast(Table, OrderLine.__table__)
_refunds = cast(Table, Refund.__table__)
_top_ups = cast(Table, CreditTopUp.__table__)
_entries = cast(Table, CreditEntry.__table__)
_accounts = cast(Table, CreditAccount.__table__)
_instances = cast(Table, Instance.__table__)
_changes = cast(Table, InstanceStatusChange.__table__)
_events = cast(Table, StripeEvent.__table__)
_users = cast(Table, User.__table__)

_NOW = bindparam("now", type_=DateTime(timezone=True))
_SINCE = {name: bindparam(f"since_{name}", type_=DateTime(timezone=True)) for name in WINDOWS}
_OLDEST = _SINCE["last_30_days"]  # the widest window: every statement reads no further back


def _per_window(value: ColumnElement[Any], moment: ColumnElement[datetime]) -> list[Any]:
    """`value` summed over the rows whose `moment` falls in each window, one column a window."""
    return [
        func.coalesce(func.sum(value).filter(moment >= _SINCE[name]), 0).cast(BigInteger)
        for name in WINDOWS
    ]


# Money in: orders by the time they were paid, with the review flag counted on the same pass.
_PAID_ORDERS = select(
    *_per_window(_orders.c.total_cents, _orders.c.paid_at),
    func.count().filter(_orders.c.needs_review),
).where(or_(_orders.c.paid_at >= _OLDEST, _orders.c.needs_review))
# An order's refunds, as Stripe reported them (a failed or canceled one gave nothing back).
_ORDER_REFUNDS = select(*_per_window(_refunds.c.amount_cents, _refunds.c.created_at)).where(
    _refunds.c.created_at >= _OLDEST, _refunds.c.status.not_in(("failed", "canceled"))
)
_PAID_TOP_UPS = select(*_per_window(_top_ups.c.amount_cents, _top_ups.c.paid_at)).where(
    _top_ups.c.paid_at >= _OLDEST
)
# A top-up's refunds are its `top_up_reversal:<refund>` entries (a dispute's key differs). The
# ledger is read through its (user, time) index, for the accounts of refunded top-ups only.
_REFUNDED_OWNERS = select(_top_ups.c.user_id).where(
    _top_ups.c.status.in_(
        [TopUpStatus.PARTIALLY_REFUNDED, TopUpStatus.REFUNDED, TopUpStatus.DISPUTED]
    )
)
_TOP_UP_REFUNDS = select(*_per_window(-_entries.c.amount_millicents, _entries.c.created_at)).where(
    _entries.c.user_id.in_(_REFUNDED_OWNERS),
    _entries.c.created_at >= _OLDEST,
    _entries.c.kind == EntryKind.TOP_UP_REVERSAL.value,
    _entries.c.idempotency_key.startswith("top_up_reversal:", autoescape=True),
)
# GPU-hours sold: the fixed hours of paid orders' lines (each line `quantity` instances). Each
# order of the window sums its own lines through their order's index (a lateral subquery): the
# lines read are the window's, however long the history (a join would hash every line).
_ORDER_GPU_HOURS = (
    select(func.sum(_lines.c.gpu_count * _lines.c.hours * _lines.c.quantity).label("gpu_hours"))
    .where(_lines.c.order_id == _orders.c.id)
    .lateral("order_gpu_hours")
)
_SOLD = (
    select(*_per_window(_ORDER_GPU_HOURS.c.gpu_hours, _orders.c.paid_at))
    .select_from(_orders.join(_ORDER_GPU_HOURS, true()))
    .where(_orders.c.paid_at >= _OLDEST)
)
# GPU time used: each instance's run (from its start to the first of its end, its termination,
# its expiry, or now) within each window, in whole seconds, times its GPUs. The runs read are
# those not ended before the widest window, found through the index of their end.
_RUN_ENDED = literal_column(RUN_END_SQL, DateTime(timezone=True))  # NULL: not ended yet
_RUN_END = func.least(_NOW, _RUN_ENDED)  # least() skips NULLs


def _gpu_seconds_since(since: ColumnElement[datetime]) -> ColumnElement[int]:
    run = _RUN_END - func.greatest(_instances.c.started_at, since)
    seconds = func.greatest(func.floor(extract("epoch", run)), 0).cast(BigInteger)
    return func.coalesce(func.sum(seconds * _instances.c.gpu_count), 0).cast(BigInteger)


_USED = select(*[_gpu_seconds_since(_SINCE[name]) for name in WINDOWS]).where(
    _instances.c.started_at.is_not(None),
    _instances.c.started_at < _NOW,
    or_(_RUN_ENDED.is_(None), _RUN_ENDED > _OLDEST),
)

_LIVE = (InstanceStatus.PROVISIONING, InstanceStatus.RUNNING)
_ACTIVE_BY_MODEL = (
    select(
        _instances.c.gpu_slug,
        func.max(_instances.c.gpu_name),
        func.count(),
        func.coalesce(func.sum(_instances.c.gpu_count), 0).cast(BigInteger),
    )
    .where(_instances.c.status.in_(_LIVE))
    .group_by(_instances.c.gpu_slug)
    .order_by(func.count().desc(), _instances.c.gpu_slug)
)
# Provisioning or stopping since longer than STUCK_AFTER: when it entered that status is its
# latest status change (few instances are in these statuses; each reads its own changes).
_ENTERED_STATUS = (
    select(func.max(_changes.c.changed_at))
    .where(_changes.c.instance_id == _instances.c.id)
    .scalar_subquery()
)
_TROUBLED_INSTANCES = select(
    func.count().filter(_instances.c.status == InstanceStatus.FAILED),
    func.count().filter(
        _instances.c.status != InstanceStatus.FAILED,
        func.coalesce(_ENTERED_STATUS, _instances.c.created_at) < bindparam("stuck_before"),
    ),
).where(
    _instances.c.status.in_(
        [InstanceStatus.FAILED, InstanceStatus.PROVISIONING, InstanceStatus.STOPPING]
    )
)
_NEGATIVE = _accounts.c.balance_millicents < 0
# The problems counted one by one, in one statement.
_COUNTS = select(
    select(func.count()).where(_events.c.status == EventStatus.FAILED).scalar_subquery(),
    select(func.min(_events.c.received_at))
    .where(_events.c.status == EventStatus.PENDING)
    .scalar_subquery(),
    select(func.count()).where(_NEGATIVE).scalar_subquery(),
)
_NEGATIVE_ACCOUNTS = (
    select(_users.c.id, _users.c.email, _accounts.c.balance_millicents)
    .select_from(_accounts.join(_users, _users.c.id == _accounts.c.user_id))
    .where(_NEGATIVE)
    .order_by(_accounts.c.balance_millicents, _users.c.email)
    .limit(NEGATIVE_LISTED)
)


@dataclass(frozen=True, slots=True)
class Revenue:
    """Money taken through Stripe in one window, in cents: paid orders and paid credit top-ups
    (each invoiced when paid), less the refunds of either made in the window."""

    orders_cents: int
    top_ups_cents: int
    refunds_cents: int

    @property
    def net_cents(self) -> int:
        return self.orders_cents + self.top_ups_cents - self.refunds_cents


class ActiveModel(NamedTuple):
    gpu_slug: str
    gpu_name: str
    instances: int
    gpus: int


class NegativeAccount(NamedTuple):
    user_id: uuid.UUID
    email: str
    balance_millicents: int


@dataclass(frozen=True, slots=True)
class Problems:
    failed_events: int
    orders_for_review: int
    failed_instances: int
    stuck_instances: int
    negative_balances: int
    oldest_pending_event_age_seconds: int | None  # None: no event waits


@dataclass(frozen=True, slots=True)
class Overview:
    now: datetime
    revenue: dict[str, Revenue]  # by window (WINDOWS)
    gpu_hours_sold: dict[str, int]
    gpu_seconds_used: dict[str, int]
    active: list[ActiveModel]
    problems: Problems
    negative_accounts: list[NegativeAccount]  # the NEGATIVE_LISTED lowest balances


def window_starts(now: datetime) -> dict[str, datetime]:
    midnight = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
    return {
        "today": midnight,
        "last_7_days": now - timedelta(days=7),
        "last_30_days": now - timedelta(days=30),
    }


def _by_window(row: Any) -> dict[str, int]:
    return {name: int(value) for name, value in zip(WINDOWS, row, strict=False)}


async def overview(db: AsyncConnection, *, now: datetime) -> Overview:
    """The console's overview as of `now` (UTC), in ten statements."""
    params: dict[str, Any] = {f"since_{name}": at for name, at in window_starts(now).items()}
    params["now"] = now
    params["stuck_before"] = now - STUCK_AFTER
    orders_row = (await db.execute(_PAID_ORDERS, params)).one()
    order_refunds = _by_window((await db.execute(_ORDER_REFUNDS, params)).one())
    top_ups = _by_window((await db.execute(_PAID_TOP_UPS, params)).one())
    top_up_refunds = _by_window((await db.execute(_TOP_UP_REFUNDS, params)).one())
    orders = _by_window(orders_row)
    revenue = {
        name: Revenue(
            orders_cents=orders[name],
            top_ups_cents=top_ups[name],
            # Reversals are in millicents, whole cents each (a Stripe refund is in cents).
            refunds_cents=order_refunds[name] + top_up_refunds[name] // MILLICENTS_PER_CENT,
        )
        for name in WINDOWS
    }
    failed_instances, stuck_instances = (await db.execute(_TROUBLED_INSTANCES, params)).one()
    failed_events, oldest_pending, negative = (await db.execute(_COUNTS)).one()
    return Overview(
        now=now,
        revenue=revenue,
        gpu_hours_sold=_by_window((await db.execute(_SOLD, params)).one()),
        gpu_seconds_used=_by_window((await db.execute(_USED, params)).one()),
        active=[ActiveModel(*row) for row in await db.execute(_ACTIVE_BY_MODEL)],
        problems=Problems(
            failed_events=failed_events,
            orders_for_review=orders_row[len(WINDOWS)],
            failed_instances=failed_instances,
            stuck_instances=stuck_instances,
            negative_balances=negative,
            oldest_pending_event_age_seconds=None
            if oldest_pending is None
            else max(int((now - oldest_pending).total_seconds()), 0),
        ),
        negative_accounts=[NegativeAccount(*row) for row in await db.execute(_NEGATIVE_ACCOUNTS)],
    )


# What a customer's page shows of each list: the latest, bounded.
RECENT = 20


@dataclass(frozen=True, slots=True)
class CustomerView:
    """A customer as support sees them."""

    user: User
    sessions: list[AuthSession]  # live, last used first
    orders: list[OrderSummary]  # the RECENT latest
    instances: list[ListedInstance]  # every one, newest first
    balance_millicents: int
    entries: list[ListedEntry]  # the RECENT latest of the ledger
    auth_events: list[AuthEvent]  # the RECENT latest


async def customer_view(db: AsyncSession, user_id: uuid.UUID, *, now: datetime) -> CustomerView:
    """The customer's profile, sessions, latest orders, instances, balance, latest ledger
    entries and authentication events; UnknownCustomer for no (or a deleted) account."""
    user = await accounts.get_active_user(db, user_id)
    if user is None:
        raise accounts.UnknownCustomer("There is no such customer.")
    reader = await db.connection()
    orders = await order_page(reader, user_id=user_id, limit=RECENT, cursor=None)
    entries = await entries_page(reader, user_id, cursor=None, limit=RECENT)
    return CustomerView(
        user=user,
        sessions=await accounts.list_sessions(db, user_id=user_id, now=now),
        orders=orders.orders,
        instances=await list_instances(reader, user_id=user_id),
        balance_millicents=await balance(db, user_id),
        entries=entries.entries,
        auth_events=await accounts.recent_auth_events(db, user_id, limit=RECENT),
    )


async def revoke_customer_sessions(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    operator_id: uuid.UUID,
    revocations: RevocationList,
    client: accounts.Client,
    now: datetime,
) -> int:
    """End every session of a customer (their access tokens stop working at once), audited
    under the operator who asked: how many were ended."""
    if await accounts.get_active_user(db, user_id) is None:
        raise accounts.UnknownCustomer("There is no such customer.")
    count = await accounts.revoke_other_sessions(
        db,
        user_id=user_id,
        keep_session_id=None,
        reason=accounts.EventType.SESSION_REVOKED,
        revocations=revocations,
        now=now,
        client=client,
    )
    await audit.record(
        db,
        await audit.signed_in_actor(db, operator_id, client),
        audit.AuditAction.SESSIONS_REVOKED,
        target_type="user",
        target_id=str(user_id),
        after={"revoked": count},
        now=now,
    )
    return count
