"""Credits: each user's wallet and the append-only ledger of what moved it
(docs/architecture.md §4, the credit ledger).

Every change of a balance is one entry, posted with `post_entry` under the account's row lock in
the caller's transaction, so a balance always equals the sum of its entries; `verify_ledger`
proves it for every account at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, cast

import structlog
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.credits.models import (
    CreditAccount,
    CreditEntry,
    CreditTopUp,
    EntryKind,
    TopUpStatus,
)
from computebill.db import shown_columns
from computebill.errors import Conflict
from computebill.money import MILLICENTS_PER_CENT
from computebill.paging import newest_first, read_page

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
    """Lock the user's wallet (`SELECT … FOR UPDATE`, opening it on first use) and answer its
    balance in millicents. Held until the caller's transaction ends."""
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


# Top-ups --------------------------------------------------------------------------------------

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
