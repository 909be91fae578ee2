"""Credits: each user's wallet and the append-only ledger of what moved it
(docs/architecture.md §4, the credit ledger).

Every change of a balance is one entry, posted with `post_entry` under the account's row lock in
the caller's transaction, so a balance always equals the sum of its entries; `verify_ledger`
proves it for every account at once.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, cast

import structlog
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    FromClause,
    Table,
    Uuid,
    and_,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.audit import service as audit
from computebill.auth.models import User
from computebill.auth.service import Client, UnknownCustomer
from computebill.credits.models import (
    CreditAccount,
    CreditEntry,
    CreditGrant,
    CreditTopUp,
    EntryKind,
    TopUpStatus,
)
from computebill.db import shown_columns
from computebill.errors import AppError, Conflict
from computebill.metrics import PAYMENTS
from computebill.money import MILLICENTS_PER_CENT
from computebill.paging import newest_first, read_page

log = structlog.get_logger(__name__)

# As tables: the statements below are Core, built once at import (docs/architecture.md §3).
log = structlog.get_logger(__name__)

_accounts = cast(Table, CreditAccount.__table__)
_entries = cast(Table, CreditEntry.__table__)


class Entry(NamedTuple):
    """An entry of the ledger as posted."""

    id: uuid.UUID
    position: int
    user_id: uuid.UUID
    kind: str
    amount_millicents: int
    balance_after_millicents: int
    idempotency_key: str
    instance_id: uuid.UUID | None
    order_id: uuid.UUID | None
    payment_intent_id: str | None
    admin_user_id: uuid.UUID | None
    reason: str | None
    expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Posted:
    entry: Entry
    created: bool  # False: the idempotency key had been posted before, and this is that entry


class IdempotencyKeyReused(Conflict):
    """A key names one posting; the same key with another user, kind or amount is a bug of the
    caller's key, never a second posting."""

    code = "idempotency_key_reused"


_ENTRY_COLUMNS = [_entries.c[name] for name in Entry._fields]

_LOCK_ACCOUNT = (
    select(_accounts.c.balance_millicents)
    .where(_accounts.c.user_id == bindparam("user_id"))
    .with_for_update()
)
_OPEN_ACCOUNT = insert(_accounts).on_conflict_do_nothing(index_elements=[_accounts.c.user_id])
# The entry and the balance it leaves, in one statement: nothing when the key was posted before.
_new_entry = (
    insert(_entries)
    .values({c: bindparam(f"new_{c.key}") for c in _entries.c if c is not _entries.c.position})
    .on_conflict_do_nothing(index_elements=[_entries.c.idempotency_key])
    .returning(*_ENTRY_COLUMNS)
    .cte("new_entry")
)
_POST = (
    update(_accounts)
    .where(_accounts.c.user_id == _new_entry.c.user_id)
    .values(balance_millicents=_new_entry.c.balance_after_millicents)
    .returning(*(_new_entry.c[name] for name in Entry._fields))
)
_POSTED = select(*_ENTRY_COLUMNS).where(_entries.c.idempotency_key == bindparam("idempotency_key"))


async def lock_account(db: AsyncSession, user_id: uuid.UUID) -> int:
    """Lock the user's account for the rest of the caller's transaction (opening it on first
    use) and answer its balance in millicents. Whoever also locks instances locks them first
    (docs/architecture.md §4, pay as you go)."""
    account = {"user_id": user_id}
    held: int | None = await db.scalar(_LOCK_ACCOUNT, account)
    if held is None:
        await db.execute(_OPEN_ACCOUNT, account)
        # A new statement, so it sees an account another transaction opened meanwhile.
        held = await db.scalar(_LOCK_ACCOUNT, account)
        assert held is not None
    return held


async def post_entry(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    kind: EntryKind,
    amount_millicents: int,
    idempotency_key: str,
    instance_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
    payment_intent_id: str | None = None,
    admin_user_id: uuid.UUID | None = None,
    reason: str | None = None,
    expires_at: datetime | None = None,
    now: datetime,
) -> Posted:
    """Post one entry and move the user's balance by its amount, in the caller's transaction,
    under the account's row lock (the account is opened on first use). A key posted before
    answers its entry again, `created=False`; with another user, kind or amount it raises
    `IdempotencyKeyReused`. Two round trips when the account exists and the key is new."""
    held = await lock_account(db, user_id)
    entry = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "kind": kind.value,
        "amount_millicents": amount_millicents,
        "balance_after_millicents": held + amount_millicents,
        "idempotency_key": idempotency_key,
        "instance_id": instance_id,
        "order_id": order_id,
        "payment_intent_id": payment_intent_id,
        "admin_user_id": admin_user_id,
        "reason": reason,
        "expires_at": expires_at,
        "created_at": now,
    }
    posted = await db.execute(_POST, {f"new_{name}": value for name, value in entry.items()})
    row = posted.one_or_none()
    if row is not None:
        return Posted(Entry._make(row), created=True)
    # Posted before: by a transaction that committed before this one took the lock, or by one
    # the insert waited for (only a key reused for another account can be in flight here).
    before = Entry._make((await db.execute(_POSTED, {"idempotency_key": idempotency_key})).one())
    if (before.user_id, before.kind, before.amount_millicents) != (
        user_id,
        kind,
        amount_millicents,
    ):
        raise IdempotencyKeyReused(
            f"The ledger key {idempotency_key!r} was posted as {before.kind} of "
            f"{before.amount_millicents} millicents for user {before.user_id}, not as "
            f"{kind.value} of {amount_millicents} millicents for user {user_id}."
        )
    return Posted(before, created=False)


_CREDITED = select(func.coalesce(func.sum(_entries.c.amount_millicents), 0).cast(BigInteger)).where(
    _entries.c.order_id == bindparam("order_id"), _entries.c.kind == bindparam("kind")
)


async def credited_millicents(db: AsyncSession, *, order_id: uuid.UUID, kind: EntryKind) -> int:
    """What the ledger holds of one kind for an order (unused time given back, say)."""
    total: int = await db.scalar(_CREDITED, {"order_id": order_id, "kind": kind.value}) or 0
    return total


_BALANCE = select(_accounts.c.balance_millicents).where(_accounts.c.user_id == bindparam("user_id"))


async def balance(db: AsyncSession | AsyncConnection, user_id: uuid.UUID) -> int:
    """The user's balance in millicents; 0 before their first entry."""
    found: int | None = await db.scalar(_BALANCE, {"user_id": user_id})
    return found or 0


@dataclass(frozen=True, slots=True)
class Mismatch:
    """An account whose balance is not what its entries say."""

    user_id: uuid.UUID
    balance_millicents: int
    entries_sum_millicents: int
    last_balance_after_millicents: int | None  # None: the account has no entries


_totals = (
    select(
        _entries.c.user_id,
        func.sum(_entries.c.amount_millicents).cast(BigInteger).label("entries_sum"),
        func.max(_entries.c.position).label("last_position"),
    )
    .group_by(_entries.c.user_id)
    .subquery("totals")
)
_last = _entries.alias("last_entry")
_entries_sum = func.coalesce(_totals.c.entries_sum, 0)
# Two scans of the ledger and one of the accounts, whatever their number.
_MISMATCHES = (
    select(
        _accounts.c.user_id,
        _accounts.c.balance_millicents,
        _entries_sum,
        _last.c.balance_after_millicents,
    )
    .select_from(
        _accounts.outerjoin(_totals, _totals.c.user_id == _accounts.c.user_id).outerjoin(
            _last,
            and_(
                _last.c.user_id == _totals.c.user_id,
                _last.c.position == _totals.c.last_position,
            ),
        )
    )
    .where(
        or_(
            _accounts.c.balance_millicents != _entries_sum,
            _accounts.c.balance_millicents != func.coalesce(_last.c.balance_after_millicents, 0),
        )
    )
    .order_by(_accounts.c.user_id)
)


async def verify_ledger(db: AsyncSession | AsyncConnection) -> list[Mismatch]:
    """Every account whose balance differs from the sum of its entries, or from the balance its
    latest entry left: one statement, so one snapshot of the whole ledger."""
    return [Mismatch(*row) for row in await db.execute(_MISMATCHES)]


class ListedEntry(NamedTuple):
    """An entry as the customer's ledger shows it, read without the ORM; ids as text."""

    id: str
    kind: str
    amount_millicents: int
    balance_after_millicents: int
    created_at: datetime
    instance_id: str | None
    order_id: str | None
    payment_intent_id: str | None
    reason: str | None
    expires_at: datetime | None


_ENTRY_LIST = newest_first(
    select(*shown_columns(_entries, ListedEntry._fields)).where(
        _entries.c.user_id == bindparam("user_id")
    ),
    _entries.c.created_at,
    _entries.c.id,
)


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: list[ListedEntry]
    next_cursor: str | None  # where the next (older) page starts; None on the last page


async def entries_page(
    db: AsyncConnection, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> EntryPage:
    """One page of the user's ledger, newest first (one statement; a list only shows)."""
    page, next_cursor = await read_page(
        db, _ENTRY_LIST, {"user_id": user_id}, make=ListedEntry._make, limit=limit, cursor=cursor
    )
    return EntryPage(entries=page, next_cursor=next_cursor)


# Grants: promotional credit, spent first and expiring (docs/architecture.md §4) ----------------

_grants = cast(Table, CreditGrant.__table__)


class Grant(NamedTuple):
    """A grant and what is left of it."""

    grant_entry_id: uuid.UUID
    amount_millicents: int
    remaining_millicents: int
    expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PostedGrant:
    posted: Posted  # the `grant` entry; created=False: its key had been posted before
    grant: Grant


_GRANT_COLUMNS = [_grants.c[name] for name in Grant._fields]
_ADD_GRANT = (
    insert(_grants)
    .on_conflict_do_nothing(index_elements=[_grants.c.grant_entry_id])
    .returning(*_GRANT_COLUMNS)
)
_GRANT = select(*_GRANT_COLUMNS).where(_grants.c.grant_entry_id == bindparam("grant_entry_id"))


async def grant_credit(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    amount_millicents: int,
    idempotency_key: str,
    expires_at: datetime | None,
    now: datetime,
    admin_user_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> PostedGrant:
    """Post a `grant` entry and the grant it opens, in the caller's transaction: grants are
    posted only here, so every grant entry has its row to be spent from and expired. A key
    posted before answers that grant again (as `post_entry` does its entry)."""
    if amount_millicents <= 0:
        raise ValueError(f"A grant credits a positive amount, not {amount_millicents}.")
    if expires_at is not None and expires_at <= now:
        raise ValueError(f"A grant expiring at {expires_at} would be expired when posted.")
    posted = await post_entry(
        db,
        user_id=user_id,
        kind=EntryKind.GRANT,
        amount_millicents=amount_millicents,
        idempotency_key=idempotency_key,
        admin_user_id=admin_user_id,
        reason=reason,
        expires_at=expires_at,
        now=now,
    )
    added = await db.execute(
        _ADD_GRANT,
        {
            "grant_entry_id": posted.entry.id,
            "user_id": user_id,
            "amount_millicents": amount_millicents,
            "remaining_millicents": amount_millicents,
            "expires_at": posted.entry.expires_at,
            "created_at": posted.entry.created_at,
        },
    )
    row = added.one_or_none()
    if row is None:  # the posting was repeated: its grant exists, perhaps partly spent
        row = (await db.execute(_GRANT, {"grant_entry_id": posted.entry.id})).one()
    return PostedGrant(posted, Grant._make(row))


# Written into the SQL, not bound: a prepared statement's generic plan can use a partial index
# only when its predicate (`remaining_millicents > 0`) follows from the query's own text.
_NOTHING = literal_column("0", BigInteger)


def _spendable(grants: FromClause, now: ColumnElement[datetime]) -> ColumnElement[bool]:
    """A grant that usage can still spend: something left, and not expired (the sweep may not
    have come by yet)."""
    return and_(
        grants.c.remaining_millicents > _NOTHING,
        or_(grants.c.expires_at.is_(None), grants.c.expires_at > now),
    )


def _spending_order(grants: FromClause) -> list[ColumnElement[Any]]:
    """Soonest expiry first, grants that never expire last, then the oldest first: the order of
    the index `ix_credit_grants_spending_order`."""
    return [
        grants.c.expires_at.asc().nulls_last(),
        grants.c.created_at,
        grants.c.grant_entry_id,
    ]


_NOW = bindparam("now", type_=DateTime(timezone=True))
_ACTIVE_GRANTS = (
    select(*_GRANT_COLUMNS)
    .where(_grants.c.user_id == bindparam("user_id"), _spendable(_grants, _NOW))
    .order_by(*_spending_order(_grants))
)


async def active_grants(
    db: AsyncSession | AsyncConnection, user_id: uuid.UUID, *, now: datetime
) -> list[Grant]:
    """The user's grants that can still be spent, in the order they will be (one statement)."""
    return [
        Grant._make(row)
        for row in await db.execute(_ACTIVE_GRANTS, {"user_id": user_id, "now": now})
    ]


# Each charge as a row, from two arrays: one statement, and one prepared plan, for any number of
# users.
_charges = (
    func.unnest(
        bindparam("user_ids", type_=ARRAY(Uuid)),
        bindparam("amounts", type_=ARRAY(BigInteger)),
    )
    .table_valued("user_id", "amount_millicents")
    .render_derived(name="charge")
)
_candidate = _grants.alias("candidate")
# What the grants before this one (in spending order) hold: the charge reaches this grant only
# when it is more than that.
_held_before = func.coalesce(
    func.sum(_candidate.c.remaining_millicents).over(
        order_by=_spending_order(_candidate), rows=(None, -1)
    ),
    0,
)
# Each charge's user's grants, read by the user's index (a lateral subquery per charge: a join
# would let the planner read every grant of every user to match a few charges).
_spent_of_user = (
    select(
        _candidate.c.grant_entry_id,
        func.least(
            _candidate.c.remaining_millicents, _charges.c.amount_millicents - _held_before
        ).label("millicents"),
    )
    .where(_candidate.c.user_id == _charges.c.user_id, _spendable(_candidate, _NOW))
    .lateral("spent_of_user")
)
_spent = (
    select(_spent_of_user.c.grant_entry_id, _spent_of_user.c.millicents)
    .select_from(_charges.join(_spent_of_user, true()))
    .subquery("spent")
)
_SPEND_GRANTS = (
    update(_grants)
    .where(_grants.c.grant_entry_id == _spent.c.grant_entry_id, _spent.c.millicents > 0)
    .values(remaining_millicents=_grants.c.remaining_millicents - _spent.c.millicents)
)


async def spend_grants(
    db: AsyncSession, charges: Mapping[uuid.UUID, int], *, now: datetime
) -> None:
    """Take usage just charged (user id → positive millicents) from the users' grants first:
    soonest expiry first, those that never expire last; a charge beyond every grant empties
    them, and the rest was paid credit. One statement for any number of users.

    Call it in the transaction that posted the charges, while it still holds those users'
    account locks (`post_entry` takes them): every change of a grant happens under its
    account's lock, so nothing moves these grants between the read and the update here. The
    balance itself is not touched: the usage entries moved it already; this only records whose
    money it was."""
    if any(amount < 0 for amount in charges.values()):
        raise ValueError("A usage charge to spend from grants is positive millicents.")
    charged = {user_id: amount for user_id, amount in charges.items() if amount > 0}
    if not charged:
        return
    await db.execute(
        _SPEND_GRANTS,
        {"user_ids": list(charged), "amounts": list(charged.values()), "now": now},
    )


# Expiry: what is left of a grant leaves the balance when it expires ------------------------------

EXPIRY_BATCH = 500


@dataclass(frozen=True, slots=True)
class ExpiredGrant:
    grant_entry_id: uuid.UUID
    user_id: uuid.UUID
    expired_millicents: int  # what was left, now gone: the `expiry` entry is its negative
    expiry_entry_id: uuid.UUID


def _due(grants: FromClause) -> ColumnElement[bool]:
    """Expired with something left: the `expiring` index's rows whose time has come."""
    return and_(
        grants.c.remaining_millicents > _NOTHING,
        grants.c.expires_at.is_not(None),
        grants.c.expires_at <= _NOW,
        grants.c.expired_at.is_(None),
    )


_DUE_GRANTS = (
    select(_grants.c.user_id)
    .where(_due(_grants))
    .order_by(_grants.c.expires_at, _grants.c.grant_entry_id)
    .limit(bindparam("limit"))
)
# Several accounts locked by one transaction are locked in the order of their ids, so two such
# transactions wait for each other instead of deadlocking.
_LOCK_ACCOUNTS = (
    select(_accounts.c.user_id)
    .where(_accounts.c.user_id == any_(bindparam("user_ids", type_=ARRAY(Uuid))))
    .order_by(_accounts.c.user_id)
    .with_for_update()
)
# Read again under the locks: usage may have spent some of it meanwhile.
_DUE_GRANTS_OF = (
    select(_grants.c.grant_entry_id, _grants.c.user_id, _grants.c.remaining_millicents)
    .where(_grants.c.user_id == any_(bindparam("user_ids", type_=ARRAY(Uuid))), _due(_grants))
    .order_by(_grants.c.expires_at, _grants.c.grant_entry_id)
    .limit(bindparam("limit"))
)
_MARK_EXPIRED = (
    update(_grants)
    .where(_grants.c.grant_entry_id == any_(bindparam("grant_entry_ids", type_=ARRAY(Uuid))))
    .values(remaining_millicents=0, expired_at=_NOW)
)


async def expire_due_grants(
    db: AsyncSession, *, now: datetime, limit: int = EXPIRY_BATCH
) -> list[ExpiredGrant]:
    """Expire up to `limit` grants whose time has come with something left, the oldest first:
    each posts an `expiry` entry of exactly what is left (key `expiry:<grant entry id>`) and is
    emptied, under its account's lock, in the caller's transaction. Run again, it finds nothing
    more to do; what is past `limit` waits for the next call."""
    owners = list(set((await db.scalars(_DUE_GRANTS, {"now": now, "limit": limit})).all()))
    if not owners:
        return []
    await db.execute(_LOCK_ACCOUNTS, {"user_ids": owners})
    due = (await db.execute(_DUE_GRANTS_OF, {"user_ids": owners, "now": now, "limit": limit})).all()
    expired = []
    for grant_entry_id, user_id, remaining in due:
        posted = await post_entry(
            db,
            user_id=user_id,
            kind=EntryKind.EXPIRY,
            amount_millicents=-remaining,
            idempotency_key=f"expiry:{grant_entry_id}",
            now=now,
        )
        expired.append(ExpiredGrant(grant_entry_id, user_id, remaining, posted.entry.id))
    await db.execute(
        _MARK_EXPIRED, {"grant_entry_ids": [e.grant_entry_id for e in expired], "now": now}
    )
    return expired


# An admin's grants and adjustments (docs/architecture.md §8) --------------------------------------


class AdminCreditKind(StrEnum):
    GRANT = EntryKind.GRANT.value
    ADJUSTMENT = EntryKind.ADJUSTMENT.value


class InvalidCreditRequest(AppError):
    """A posting an admin asked for that the ledger must not hold; names the field at fault."""

    status = 422

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__(
            detail, errors=[{"field": f"body.{field}", "message": detail, "type": "value_error"}]
        )


class GrantNotPositive(InvalidCreditRequest):
    code = "grant_not_positive"


class ZeroAdjustment(InvalidCreditRequest):
    code = "adjustment_zero"


class ExpiryOnlyForGrants(InvalidCreditRequest):
    code = "expiry_only_for_grants"


class ExpiryNotInFuture(InvalidCreditRequest):
    code = "expiry_not_in_future"


class ReasonRequired(InvalidCreditRequest):
    code = "reason_required"


class ReasonInvalid(InvalidCreditRequest):
    code = "reason_invalid"


@dataclass(frozen=True, slots=True)
class AdminPosting:
    posted: Posted
    grant: Grant | None  # the grant an entry of kind `grant` opened


_CUSTOMER = select(User.id).where(User.id == bindparam("user_id"), User.deleted_at.is_(None))


def _clean_reason(reason: str) -> str:
    """The reason without surrounding space; it must say something, and hold no control
    characters but line breaks and tabs (PostgreSQL text cannot hold a NUL)."""
    cleaned = reason.strip()
    if not cleaned:
        raise ReasonRequired("An admin's posting needs a reason.", field="reason")
    if any(unicodedata.category(c) in {"Cc", "Cs"} and c not in "\n\t" for c in cleaned):
        raise ReasonInvalid("The reason has control characters.", field="reason")
    return cleaned


async def post_admin_credit(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    admin_user_id: uuid.UUID,
    kind: AdminCreditKind,
    amount_cents: int,
    reason: str,
    expires_at: datetime | None,
    request_key: str | None,
    now: datetime,
) -> AdminPosting:
    """A grant or an adjustment an admin posts to a customer's ledger, with the admin and the
    reason on the entry. `request_key` (the request's Idempotency-Key) names the posting, so a
    retried request answers the first one; without it every call is a new posting."""
    reason = _clean_reason(reason)
    if kind is AdminCreditKind.GRANT and amount_cents <= 0:
        raise GrantNotPositive("A grant credits a positive amount.", field="amount_cents")
    if kind is AdminCreditKind.ADJUSTMENT and amount_cents == 0:
        raise ZeroAdjustment("An adjustment moves the balance.", field="amount_cents")
    if expires_at is not None and kind is not AdminCreditKind.GRANT:
        raise ExpiryOnlyForGrants("Only a grant expires.", field="expires_at")
    if expires_at is not None and expires_at <= now:
        raise ExpiryNotInFuture("A grant's expiry must be in the future.", field="expires_at")
    if await db.scalar(_CUSTOMER, {"user_id": user_id}) is None:
        raise UnknownCustomer("There is no such customer.")
    # One admin's keys never meet another's, nor the keys built from natural ids.
    key = f"admin:{admin_user_id}:{request_key or uuid.uuid4()}"
    amount = amount_cents * MILLICENTS_PER_CENT
    grant: Grant | None = None
    if kind is AdminCreditKind.GRANT:
        posted_grant = await grant_credit(
            db,
            user_id=user_id,
            amount_millicents=amount,
            idempotency_key=key,
            expires_at=expires_at,
            now=now,
            admin_user_id=admin_user_id,
            reason=reason,
        )
        posted, grant = posted_grant.posted, posted_grant.grant
    else:
        posted = await post_entry(
            db,
            user_id=user_id,
            kind=EntryKind.ADJUSTMENT,
            amount_millicents=amount,
            idempotency_key=key,
            admin_user_id=admin_user_id,
            reason=reason,
            now=now,
        )
    log.info(
        "credit_posted_by_admin",
        admin_user_id=str(admin_user_id),
        user_id=str(user_id),
        kind=kind.value,
        amount_millicents=amount,
        entry_id=str(posted.entry.id),
        expires_at=expires_at.isoformat() if expires_at else None,
        reason=reason,
        repeated=not posted.created,
    )
    return AdminPosting(posted, grant)


async def post_audited_admin_credit(
    db: AsyncSession,
    user_id: uuid.UUID,
    *,
    admin_user_id: uuid.UUID,
    client: Client,
    kind: AdminCreditKind,
    amount_cents: int,
    reason: str,
    expires_at: datetime | None,
    request_key: str | None,
    now: datetime,
) -> AdminPosting:
    """`post_admin_credit`, and its audit entry when it posted (a repeat posts nothing, and
    records nothing): what the API's call and the console's form both do."""
    posting = await post_admin_credit(
        db,
        user_id,
        admin_user_id=admin_user_id,
        kind=kind,
        amount_cents=amount_cents,
        reason=reason,
        expires_at=expires_at,
        request_key=request_key,
        now=now,
    )
    if posting.posted.created:
        entry = posting.posted.entry
        await audit.record(
            db,
            await audit.signed_in_actor(db, admin_user_id, client),
            audit.AuditAction.CREDIT_POSTED,
            target_type="user",
            target_id=str(user_id),
            after={"kind": kind.value, "amount_cents": amount_cents, "entry_id": str(entry.id)},
            reason=entry.reason,
            now=now,
        )
    return posting


# Top-ups --------------------------------------------------------------------------------------


def check_amount_in_range(
    amount_cents: int, *, minimum_cents: int, maximum_cents: int, refusal: type[AppError], what: str
) -> None:
    """Refuse (`refusal`, naming `body.amount_cents`) an amount outside [minimum, maximum]: what
    one top-up, bought on the page or by auto-recharge (`what`), may buy."""
    if not minimum_cents <= amount_cents <= maximum_cents:
        raise refusal(
            f"{what} is between {minimum_cents} and {maximum_cents} cents.",
            errors=[
                {
                    "field": "body.amount_cents",
                    "message": f"must be between {minimum_cents} and {maximum_cents}",
                    "type": "range",
                }
            ],
        )


# Forward only, as an order's: a stale or repeated event changes nothing. A dispute ends it.
TOP_UP_ALLOWED: dict[TopUpStatus, set[TopUpStatus]] = {
    TopUpStatus.PENDING: {TopUpStatus.PAID, TopUpStatus.EXPIRED, TopUpStatus.PAYMENT_FAILED},
    TopUpStatus.PAID: {
        TopUpStatus.PARTIALLY_REFUNDED,
        TopUpStatus.REFUNDED,
        TopUpStatus.DISPUTED,
    },
    TopUpStatus.PARTIALLY_REFUNDED: {
        TopUpStatus.PARTIALLY_REFUNDED,
        TopUpStatus.REFUNDED,
        TopUpStatus.DISPUTED,
    },
}
# Paid at some point, so credited: a refund or dispute of these reverses credit.
TOP_UP_CREDITED = {
    TopUpStatus.PAID,
    TopUpStatus.PARTIALLY_REFUNDED,
    TopUpStatus.REFUNDED,
    TopUpStatus.DISPUTED,
}


def transition_top_up(top_up: CreditTopUp, to: TopUpStatus, *, reason: str) -> bool:
    """Move the top-up forward; False (and nothing changes) when that would not be forward."""
    if to not in TOP_UP_ALLOWED.get(top_up.status, set()):
        log.info(
            "top_up_transition_ignored",
            top_up_id=str(top_up.id),
            status=top_up.status.value,
            to=to.value,
            reason=reason,
        )
        return False
    top_up.status = to
    return True


async def _lock_top_up_where(
    db: AsyncSession, condition: ColumnElement[bool]
) -> CreditTopUp | None:
    # Fresh from the row, not the session's copy: the caller re-checks what it read unlocked.
    return await db.scalar(
        select(CreditTopUp)
        .where(condition)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def lock_top_up(db: AsyncSession, top_up_id: uuid.UUID) -> CreditTopUp | None:
    return await _lock_top_up_where(db, CreditTopUp.id == top_up_id)


async def lock_top_up_by_session(db: AsyncSession, session_id: str) -> CreditTopUp | None:
    return await _lock_top_up_where(db, CreditTopUp.checkout_session_id == session_id)


async def lock_top_up_by_payment_intent(
    db: AsyncSession, payment_intent_id: str
) -> CreditTopUp | None:
    return await _lock_top_up_where(db, CreditTopUp.payment_intent_id == payment_intent_id)


async def credit_top_up(
    db: AsyncSession, top_up: CreditTopUp, *, payment_intent_id: str, now: datetime
) -> Posted | None:
    """Mark a pending top-up, locked by the caller, paid and post its credit (key
    `top_up:<payment intent>`); None when it is not pending (credited before, or closed)."""
    if not transition_top_up(top_up, TopUpStatus.PAID, reason=f"paid by {payment_intent_id}"):
        return None
    top_up.payment_intent_id = payment_intent_id
    top_up.paid_at = now
    PAYMENTS.count(db, kind="top_up", currency=top_up.currency, cents=top_up.amount_cents)
    # The top-up's payment intent is written before the entry names it (lock order: the top-up
    # row, then the account row, on every path).
    await db.flush()
    return await post_entry(
        db,
        user_id=top_up.user_id,
        kind=EntryKind.TOP_UP,
        amount_millicents=top_up.amount_cents * MILLICENTS_PER_CENT,
        idempotency_key=f"top_up:{payment_intent_id}",
        payment_intent_id=payment_intent_id,
        now=now,
    )


async def reverse_top_up(
    db: AsyncSession,
    top_up: CreditTopUp,
    *,
    amount_cents: int,
    idempotency_key: str,
    now: datetime,
) -> Posted | None:
    """Take back `amount_cents` of a credited top-up, locked by the caller, as one
    `top_up_reversal` entry (`top_up_reversal:<refund>` or `top_up_dispute:<dispute>`, so a
    repeated event posts nothing more). The balance may go negative. None when the top-up was
    never credited or the amount is not positive."""
    if top_up.status not in TOP_UP_CREDITED or amount_cents <= 0:
        return None
    assert top_up.payment_intent_id is not None  # set when it was credited
    return await post_entry(
        db,
        user_id=top_up.user_id,
        kind=EntryKind.TOP_UP_REVERSAL,
        amount_millicents=-amount_cents * MILLICENTS_PER_CENT,
        idempotency_key=idempotency_key,
        payment_intent_id=top_up.payment_intent_id,
        now=now,
    )
