"""Paperwork (docs/architecture.md §4, paperwork): the billing profile, numbered invoices issued
in the transaction that fulfils a payment, and monthly statements of the credit ledger."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, cast

import structlog
from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.auth.models import User
from computebill.catalog.models import PricingPolicy
from computebill.config import Settings
from computebill.credits.models import CreditEntry, CreditTopUp, EntryKind
from computebill.db import shown_columns
from computebill.errors import AppError, NotFound
from computebill.instances.models import Instance
from computebill.invoices.models import (
    BillingProfile,
    Invoice,
    InvoiceLine,
    InvoiceNumberCounter,
    Statement,
    StatementLine,
)
from computebill.jobs import JobName, request_job
from computebill.money import MILLICENTS_PER_CENT, round_half_up
from computebill.orders.models import Order, OrderLine
from computebill.paging import newest_first, read_page

log = structlog.get_logger(__name__)

# Billing profile --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileFields:
    """A billing profile as the customer gives it, already validated (schemas)."""

    name: str
    company: str | None
    address_line1: str
    address_line2: str | None
    city: str
    postal_code: str
    country: str
    tax_id: str | None


async def billing_profile(db: AsyncSession, user_id: uuid.UUID) -> BillingProfile | None:
    return await db.get(BillingProfile, user_id)


async def save_billing_profile(
    db: AsyncSession, user_id: uuid.UUID, fields: ProfileFields
) -> BillingProfile:
    """Create or replace the user's billing profile; invoices issued from now on use it."""
    values = dataclasses.asdict(fields)
    await db.execute(
        insert(BillingProfile)
        .values(user_id=user_id, **values)
        .on_conflict_do_update(
            index_elements=[BillingProfile.user_id], set_={**values, "updated_at": func.now()}
        )
    )
    profile = await db.get(BillingProfile, user_id, populate_existing=True)
    assert profile is not None
    return profile


def address_lines(profile: BillingProfile) -> list[str]:
    """The profile's postal address, a line each, as printed on an invoice."""
    return [
        line
        for line in (
            profile.company,
            profile.address_line1,
            profile.address_line2,
            f"{profile.postal_code} {profile.city}",
            profile.country,
        )
        if line
    ]


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    email: str
    address: str  # lines separated by "\n"
    tax_id: str | None


async def _buyer(db: AsyncSession, user_id: uuid.UUID) -> Party:
    """Who an invoice or statement is for: the billing profile, else the account's name."""
    user = await db.get(User, user_id)
    assert user is not None
    profile = await billing_profile(db, user_id)
    if profile is None:
        return Party(name=user.name or user.email, email=user.email, address="", tax_id=None)
    return Party(
        name=profile.name,
        email=user.email,
        address="\n".join(address_lines(profile)),
        tax_id=profile.tax_id,
    )


@dataclass(frozen=True, slots=True)
class Seller:
    """Who issues the paperwork: SELLER_NAME, SELLER_ADDRESS (its commas or newlines as lines)
    and SELLER_TAX_ID."""

    name: str
    address: str
    tax_id: str | None

    @classmethod
    def of(cls, settings: Settings) -> Seller:
        parts = settings.seller_address.replace("\n", ",").split(",")
        return cls(
            name=settings.seller_name,
            address="\n".join(part.strip() for part in parts if part.strip()),
            tax_id=settings.seller_tax_id or None,
        )


# Invoices ---------------------------------------------------------------------------------------


def invoice_number(year: int, sequence: int) -> str:
    return f"CB-{year}-{sequence:06d}"


async def _next_sequence(db: AsyncSession, year: int) -> int:
    """The year's next number. The counter's row stays locked until the transaction ends, so
    invoices are numbered one at a time, and a rolled-back transaction gives its number back."""
    await db.execute(
        insert(InvoiceNumberCounter)
        .values(year=year, last_number=0)
        .on_conflict_do_nothing(index_elements=[InvoiceNumberCounter.year])
    )
    sequence = await db.scalar(
        update(InvoiceNumberCounter)
        .where(InvoiceNumberCounter.year == year)
        .values(last_number=InvoiceNumberCounter.last_number + 1)
        .returning(InvoiceNumberCounter.last_number)
    )
    assert sequence is not None
    return int(sequence)


@dataclass(frozen=True, slots=True)
class LineIn:
    description: str
    quantity: int
    unit_amount_cents: int


async def _issue(
    db: AsyncSession,
    *,
    seller: Seller,
    user_id: uuid.UUID,
    order_id: uuid.UUID | None = None,
    top_up_id: uuid.UUID | None = None,
    lines: Sequence[LineIn],
    total_cents: int,
    currency: str,
    paid_at: datetime,
    payment_method: str,
    payment_intent_id: str | None,
    now: datetime,
) -> Invoice:
    subtotal = sum(line.unit_amount_cents * line.quantity for line in lines)
    credits_applied = subtotal - total_cents
    assert 0 <= credits_applied <= subtotal, "credits applied exceed the invoice's total"
    year = now.astimezone(UTC).year
    sequence = await _next_sequence(db, year)
    buyer = await _buyer(db, user_id)
    invoice = Invoice(
        id=uuid.uuid4(),
        number=invoice_number(year, sequence),
        year=year,
        sequence=sequence,
        user_id=user_id,
        order_id=order_id,
        top_up_id=top_up_id,
        issued_at=now,
        paid_at=paid_at,
        currency=currency,
        subtotal_cents=subtotal,
        credits_applied_cents=credits_applied,
        total_cents=total_cents,
        seller_name=seller.name,
        seller_address=seller.address,
        seller_tax_id=seller.tax_id,
        buyer_name=buyer.name,
        buyer_email=buyer.email,
        buyer_address=buyer.address,
        buyer_tax_id=buyer.tax_id,
        payment_method=payment_method,
        payment_intent_id=payment_intent_id,
    )
    db.add(invoice)
    await db.flush()
    db.add_all(
        InvoiceLine(
            invoice_id=invoice.id,
            position=position,
            description=line.description,
            quantity=line.quantity,
            unit_amount_cents=line.unit_amount_cents,
            amount_cents=line.unit_amount_cents * line.quantity,
        )
        for position, line in enumerate(lines, start=1)
    )
    await db.flush()
    request_job(db, JobName.SEND_INVOICE_EMAIL, str(invoice.id))
    return invoice


async def issue_for_order(
    db: AsyncSession, order: Order, *, seller: Seller, payment_method: str, now: datetime
) -> Invoice:
    """The invoice of an order just marked paid, in the fulfilment's transaction (the order's row
    locked by the caller); the one it already has when fulfilment is repeated."""
    existing = await db.scalar(select(Invoice).where(Invoice.order_id == order.id))
    if existing is not None:
        return existing
    assert order.paid_at is not None
    lines = await db.scalars(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.position)
    )
    return await _issue(
        db,
        seller=seller,
        user_id=order.user_id,
        order_id=order.id,
        lines=[
            LineIn(line.description.text, line.quantity, line.unit_total_cents) for line in lines
        ],
        total_cents=order.total_cents,
        currency=order.currency,
        paid_at=order.paid_at,
        payment_method=payment_method,
        payment_intent_id=order.payment_intent_id,
        now=now,
    )


async def issue_for_top_up(
    db: AsyncSession,
    top_up: CreditTopUp,
    *,
    seller: Seller,
    payment_method: str,
    now: datetime,
) -> Invoice:
    """The invoice of a top-up just credited, in the fulfilment's transaction (the top-up's row
    locked by the caller); the one it already has when fulfilment is repeated."""
    existing = await db.scalar(select(Invoice).where(Invoice.top_up_id == top_up.id))
    if existing is not None:
        return existing
    assert top_up.paid_at is not None
    return await _issue(
        db,
        seller=seller,
        user_id=top_up.user_id,
        top_up_id=top_up.id,
        lines=[LineIn("Compute credit (prepaid)", 1, top_up.amount_cents)],
        total_cents=top_up.amount_cents,
        currency=top_up.currency,
        paid_at=top_up.paid_at,
        payment_method=payment_method,
        payment_intent_id=top_up.payment_intent_id,
        now=now,
    )


@dataclass(frozen=True, slots=True)
class InvoiceDetail:
    invoice: Invoice
    lines: list[InvoiceLine]


async def _owned(
    db: AsyncSession,
    paper: type[Invoice] | type[Statement],
    paper_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None,
) -> Any:
    """The invoice or statement; 404 unless it is the user's (None: anyone's)."""
    query = select(paper).where(paper.id == paper_id)
    if user_id is not None:
        query = query.where(paper.user_id == user_id)
    found = await db.scalar(query)
    if found is None:
        raise NotFound(f"No such {paper.__tablename__.removesuffix('s')}.")
    return found


async def get_invoice(
    db: AsyncSession, invoice_id: uuid.UUID, *, user_id: uuid.UUID | None
) -> InvoiceDetail:
    """The invoice with its lines; 404 unless it is the user's (None: anyone's)."""
    invoice: Invoice = await _owned(db, Invoice, invoice_id, user_id=user_id)
    lines = await db.scalars(
        select(InvoiceLine)
        .where(InvoiceLine.invoice_id == invoice.id)
        .order_by(InvoiceLine.position)
    )
    return InvoiceDetail(invoice, list(lines))


_invoices = cast(Table, Invoice.__table__)


class ListedInvoice(NamedTuple):
    """An invoice as a list shows it, read without the ORM; ids as text."""

    id: str
    number: str
    issued_at: datetime
    paid_at: datetime
    currency: str
    total_cents: int
    order_id: str | None
    top_up_id: str | None

    @property
    def created_at(self) -> datetime:  # where a page of the list ends (paging.Listed)
        return self.issued_at


_INVOICE_LIST = newest_first(
    select(*shown_columns(_invoices, ListedInvoice._fields)).where(
        _invoices.c.user_id == bindparam("user_id")
    ),
    _invoices.c.issued_at,
    _invoices.c.id,
)


async def invoices_page(
    db: AsyncConnection, user_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[list[ListedInvoice], str | None]:
    """One page of the user's invoices, newest first, and where the next page starts."""
    return await read_page(
        db,
        _INVOICE_LIST,
        {"user_id": user_id},
        make=ListedInvoice._make,
        limit=limit,
        cursor=cursor,
    )


# Statements -------------------------------------------------------------------------------------


class StatementOutOfBalance(AppError):
    """The ledger's balances do not match its entries across the month (never expected: the
    ledger's own verification would report it too); nothing is issued."""

    status = 409
    code = "statement_out_of_balance"


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The UTC instants a month starts and ends (exclusive)."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def previous_month(now: datetime) -> date:
    today = now.astimezone(UTC).date()
    return date(today.year - (today.month == 1), (today.month - 2) % 12 + 1, 1)


_entries = cast(Table, CreditEntry.__table__)

# The balance an account's last posting before an instant left (the index on user and
# created_at, read backwards; `position` orders postings of the same instant).
_BALANCE_BEFORE = (
    select(_entries.c.balance_after_millicents)
    .where(
        _entries.c.user_id == bindparam("user_id"),
        _entries.c.created_at < bindparam("before"),
    )
    .order_by(_entries.c.created_at.desc(), _entries.c.position.desc())
    .limit(1)
)

# A settlement's usage entry: `usage:<instance>:<through second>` (instances/metering.py).
USAGE_KEY = r"^usage:[^:]+:[0-9]+$"

# A month's entries of an account, grouped: by kind, and usage (and unused time) per instance.
_MONTH_GROUPS = text(
    """
    SELECT e.kind, e.instance_id, count(*) AS entries, sum(e.amount_millicents) AS amount,
           max(CASE WHEN e.kind = 'usage' AND e.idempotency_key ~ :usage_key
                    THEN split_part(e.idempotency_key, ':', 3)::bigint END) AS through
      FROM credit_entries e
     WHERE e.user_id = :user_id AND e.created_at >= :start AND e.created_at < :end
     GROUP BY e.kind, e.instance_id
    """
)

# Where an instance's usage stood before the month: the last second its earlier entries charged.
_USAGE_BEFORE = text(
    """
    SELECT max(split_part(e.idempotency_key, ':', 3)::bigint)
      FROM credit_entries e
     WHERE e.instance_id = :instance_id AND e.kind = 'usage' AND e.created_at < :start
       AND e.idempotency_key ~ :usage_key
    """
)

# Accounts owed a statement of a month: entries in it, or a balance other than zero when it
# began; and none issued yet.
_DUE_ACCOUNTS = text(
    """
    SELECT a.user_id
      FROM credit_accounts a
     WHERE NOT EXISTS (SELECT 1 FROM statements s WHERE s.user_id = a.user_id AND s.month = :month)
       AND (EXISTS (SELECT 1 FROM credit_entries e
                     WHERE e.user_id = a.user_id AND e.created_at >= :start AND e.created_at < :end)
            OR coalesce((SELECT e.balance_after_millicents FROM credit_entries e
                          WHERE e.user_id = a.user_id AND e.created_at < :start
                          ORDER BY e.created_at DESC, e.position DESC LIMIT 1), 0) <> 0)
     ORDER BY a.user_id
    """
)

# In which order the groups are printed, and what they are called.
SECTIONS: dict[str, str] = {
    EntryKind.TOP_UP: "Top-ups",
    EntryKind.USAGE: "Usage",
    EntryKind.UNUSED_TIME: "Unused time credited",
    EntryKind.GRANT: "Promotional credit",
    EntryKind.EXPIRY: "Promotional credit expired",
    EntryKind.ADJUSTMENT: "Adjustments",
    EntryKind.TOP_UP_REVERSAL: "Top-ups reversed",
    EntryKind.PURCHASE: "Hours bought with credit",
}


@dataclass(frozen=True, slots=True)
class LineFigures:
    kind: str
    description: str
    entry_count: int
    amount_millicents: int
    instance_id: uuid.UUID | None = None
    seconds: int | None = None
    rate_millicents_per_hour: int | None = None


@dataclass(frozen=True, slots=True)
class MonthFigures:
    opening_millicents: int
    lines: list[LineFigures]
    closing_millicents: int

    @property
    def movement_millicents(self) -> int:
        return sum(line.amount_millicents for line in self.lines)

    @property
    def entry_count(self) -> int:
        return sum(line.entry_count for line in self.lines)


def _instance_label(instance: Instance | None) -> str:
    if instance is None:
        return "Instance"
    return f"{instance.name} ({instance.gpu_count} × {instance.gpu_name})"


async def month_figures(db: AsyncSession, user_id: uuid.UUID, month: date) -> MonthFigures:
    """An account's month of the ledger: opening balance, the entries grouped, and the closing
    balance, which is the opening plus the entries, checked against the balance the month's last
    posting left."""
    start, end = month_bounds(month)
    opening = await db.scalar(_BALANCE_BEFORE, {"user_id": user_id, "before": start}) or 0
    window = {"user_id": user_id, "start": start, "end": end, "usage_key": USAGE_KEY}
    groups = list(await db.execute(_MONTH_GROUPS, window))
    instance_ids = {row.instance_id for row in groups if row.instance_id is not None}
    instances = {
        instance.id: instance
        for instance in await db.scalars(select(Instance).where(Instance.id.in_(instance_ids)))
    }
    lines: list[LineFigures] = []
    for row in groups:
        instance = instances.get(row.instance_id) if row.instance_id is not None else None
        seconds = None
        if row.kind == EntryKind.USAGE and row.through is not None:
            before = await db.scalar(
                _USAGE_BEFORE,
                {"instance_id": row.instance_id, "start": start, "usage_key": USAGE_KEY},
            )
            seconds = int(row.through) - int(before or 0)
        lines.append(
            LineFigures(
                kind=row.kind,
                description=(
                    _instance_label(instance) if row.instance_id is not None else SECTIONS[row.kind]
                ),
                entry_count=int(row.entries),
                amount_millicents=int(row.amount),
                instance_id=row.instance_id,
                seconds=seconds,
                rate_millicents_per_hour=(
                    instance.rate_millicents_per_hour if instance is not None else None
                ),
            )
        )
    order = list(SECTIONS)
    lines.sort(key=lambda line: (order.index(line.kind), line.description, str(line.instance_id)))
    figures = MonthFigures(
        int(opening), lines, int(opening) + sum(line.amount_millicents for line in lines)
    )
    if lines:
        left = await db.scalar(_BALANCE_BEFORE, {"user_id": user_id, "before": end})
        if left != figures.closing_millicents:
            raise StatementOutOfBalance(
                f"The ledger of {user_id} in {month:%Y-%m} does not add up: opening "
                f"{figures.opening_millicents} + entries {figures.movement_millicents} != "
                f"{left}, the balance its last entry left."
            )
    return figures


async def issue_statement(
    db: AsyncSession, user_id: uuid.UUID, month: date, *, seller: Seller, now: datetime
) -> Statement | None:
    """Issue the account's statement of a month that has ended; None when it has one already."""
    _, end = month_bounds(month)
    assert now >= end, "a month's statement is issued only after the month has ended"
    figures = await month_figures(db, user_id, month)
    assert figures.closing_millicents == figures.opening_millicents + figures.movement_millicents
    buyer = await _buyer(db, user_id)
    currency = await db.scalar(select(PricingPolicy.currency)) or "usd"
    statement_id = await db.scalar(
        insert(Statement)
        .values(
            id=uuid.uuid4(),
            user_id=user_id,
            month=month,
            currency=currency,
            opening_balance_millicents=figures.opening_millicents,
            movement_millicents=figures.movement_millicents,
            closing_balance_millicents=figures.closing_millicents,
            entry_count=figures.entry_count,
            seller_name=seller.name,
            seller_address=seller.address,
            buyer_name=buyer.name,
            buyer_email=buyer.email,
            issued_at=now,
        )
        .on_conflict_do_nothing(index_elements=[Statement.user_id, Statement.month])
        .returning(Statement.id)
    )
    if statement_id is None:
        return None
    db.add_all(
        StatementLine(
            statement_id=statement_id,
            position=position,
            kind=line.kind,
            description=line.description,
            entry_count=line.entry_count,
            instance_id=line.instance_id,
            seconds=line.seconds,
            rate_millicents_per_hour=line.rate_millicents_per_hour,
            amount_millicents=line.amount_millicents,
        )
        for position, line in enumerate(figures.lines, start=1)
    )
    await db.flush()
    return await db.get(Statement, statement_id)


async def issue_statements(db: AsyncSession, month: date, *, seller: Seller, now: datetime) -> int:
    """Issue every statement of the month still missing; how many were issued. Run again, it
    issues none."""
    start, end = month_bounds(month)
    due = await db.scalars(_DUE_ACCOUNTS, {"month": month, "start": start, "end": end})
    issued = 0
    for user_id in list(due):
        try:
            async with db.begin_nested():
                statement = await issue_statement(db, user_id, month, seller=seller, now=now)
        except StatementOutOfBalance as error:
            # The others are issued; this one waits for an operator (and is tried again).
            log.error(
                "statement_out_of_balance", alert=True, user_id=str(user_id), detail=str(error)
            )
            continue
        issued += statement is not None
    return issued


@dataclass(frozen=True, slots=True)
class StatementDetail:
    statement: Statement
    lines: list[StatementLine]


async def get_statement(
    db: AsyncSession, statement_id: uuid.UUID, *, user_id: uuid.UUID | None
) -> StatementDetail:
    """The statement with its lines; 404 unless it is the user's (None: anyone's)."""
    statement: Statement = await _owned(db, Statement, statement_id, user_id=user_id)
    lines = await db.scalars(
        select(StatementLine)
        .where(StatementLine.statement_id == statement.id)
        .order_by(StatementLine.position)
    )
    return StatementDetail(statement, list(lines))


async def list_statements(db: AsyncSession | AsyncConnection, user_id: uuid.UUID) -> list[Any]:
    """The user's statements, newest month first (one a month: a short list)."""
    return list(
        await db.execute(
            select(
                Statement.id,
                Statement.month,
                Statement.currency,
                Statement.opening_balance_millicents,
                Statement.closing_balance_millicents,
                Statement.entry_count,
                Statement.issued_at,
            )
            .where(Statement.user_id == user_id)
            .order_by(Statement.month.desc())
        )
    )


# How a statement is printed: in cents, adding up -------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrintedLine:
    line: StatementLine
    cents: int


@dataclass(frozen=True, slots=True)
class PrintedStatement:
    """A statement's figures at cent precision, so the printed lines add up to the printed
    totals: each figure is rounded half up to the cent on its own, and what the rounding of the
    lines lost or gained against the totals is one line of its own, `rounding_cents` (shown only
    when it is not zero). The exact millicents stay in the JSON and the CSV."""

    opening_cents: int
    lines: list[PrintedLine]
    rounding_cents: int
    closing_cents: int


def to_cents(millicents: int) -> int:
    return round_half_up(millicents, MILLICENTS_PER_CENT)


def printed(detail: StatementDetail) -> PrintedStatement:
    statement = detail.statement
    opening = to_cents(statement.opening_balance_millicents)
    closing = to_cents(statement.closing_balance_millicents)
    lines = [PrintedLine(line, to_cents(line.amount_millicents)) for line in detail.lines]
    rounding = closing - opening - sum(line.cents for line in lines)
    return PrintedStatement(opening, lines, rounding, closing)
