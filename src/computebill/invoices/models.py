from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from computebill.db import Base, TimestampMixin


class BillingProfile(TimestampMixin, Base):
    """Who a customer's invoices are addressed to; copied into each invoice when it is issued."""

    __tablename__ = "billing_profiles"
    __table_args__ = (CheckConstraint("country ~ '^[A-Z]{2}$'", name="country_alpha_2"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    company: Mapped[str | None] = mapped_column(String(200))
    address_line1: Mapped[str] = mapped_column(String(200), nullable=False)
    address_line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100), nullable=False)
    postal_code: Mapped[str] = mapped_column(String(20), nullable=False)
    country: Mapped[str] = mapped_column(String(2), nullable=False)
    tax_id: Mapped[str | None] = mapped_column(String(40))


class InvoiceNumberCounter(Base):
    """The last invoice number given out in a calendar year (UTC). Taken with `UPDATE …
    RETURNING` in the transaction that issues the invoice, so a rolled-back issue gives its
    number back and the committed numbers of a year have no gaps."""

    __tablename__ = "invoice_number_counters"
    __table_args__ = (CheckConstraint("last_number >= 0", name="last_number_not_negative"),)

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(Integer, nullable=False)


class Invoice(Base):
    """Immutable, as are its lines and the statements: a trigger of the migration refuses UPDATE
        and DELETE of their rows (docs/architecture.md §4, paperwork), as for the credit ledger.
    A receipt of a paid order or a credited top-up: everything on it is a snapshot taken when
        it was issued, so later changes of the profile, the settings or the order never alter it."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("year", "sequence", name="uq_invoices_year_sequence"),
        CheckConstraint(
            "(order_id IS NULL) <> (top_up_id IS NULL)", name="pays_an_order_or_a_top_up"
        ),
        CheckConstraint("subtotal_cents >= 0", name="subtotal_not_negative"),
        CheckConstraint(
            "credits_applied_cents >= 0 AND credits_applied_cents <= subtotal_cents",
            name="credits_within_subtotal",
        ),
        CheckConstraint(
            "total_cents = subtotal_cents - credits_applied_cents",
            name="total_is_subtotal_less_credits",
        ),
        # A customer's invoices, newest first (the list, a page at a time).
        Index(
            "ix_invoices_user_id_issued_at_id", "user_id", text("issued_at DESC"), text("id DESC")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[str] = mapped_column(String(20), unique=True, nullable=False)
    year: Mapped[int] = mapped_column(Integer, nullable=False)
    sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"), unique=True)
    top_up_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("credit_top_ups.id"), unique=True
    )
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    paid_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    subtotal_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    credits_applied_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    total_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    seller_name: Mapped[str] = mapped_column(Text, nullable=False)
    seller_address: Mapped[str] = mapped_column(Text, nullable=False)
    seller_tax_id: Mapped[str | None] = mapped_column(Text)
    buyer_name: Mapped[str] = mapped_column(Text, nullable=False)
    buyer_email: Mapped[str] = mapped_column(Text, nullable=False)
    # Lines of the address, "\n"-separated; empty when the customer had no billing profile.
    buyer_address: Mapped[str] = mapped_column(Text, nullable=False)
    buyer_tax_id: Mapped[str | None] = mapped_column(Text)
    payment_method: Mapped[str] = mapped_column(Text, nullable=False)
    payment_intent_id: Mapped[str | None] = mapped_column(Text)


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        UniqueConstraint("invoice_id", "position", name="uq_invoice_lines_invoice_id_position"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount_cents = unit_amount_cents * quantity", name="amount_is_units"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    unit_amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)


class Statement(Base):
    """A month of one account's credit ledger (UTC), issued after the month ended: the opening
    balance, the month's entries grouped, and the closing balance, which is the opening plus the
    entries (checked at issue and by a CHECK)."""

    __tablename__ = "statements"
    __table_args__ = (
        UniqueConstraint("user_id", "month", name="uq_statements_user_id_month"),
        CheckConstraint("extract(day FROM month) = 1", name="month_is_first_day"),
        CheckConstraint(
            "closing_balance_millicents = opening_balance_millicents + movement_millicents",
            name="closing_is_opening_plus_movement",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    month: Mapped[date] = mapped_column(Date, nullable=False)  # its first day
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    opening_balance_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    movement_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    closing_balance_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    entry_count: Mapped[int] = mapped_column(Integer, nullable=False)
    seller_name: Mapped[str] = mapped_column(Text, nullable=False)
    seller_address: Mapped[str] = mapped_column(Text, nullable=False)
    buyer_name: Mapped[str] = mapped_column(Text, nullable=False)
    buyer_email: Mapped[str] = mapped_column(Text, nullable=False)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class StatementLine(Base):
    """One group of a statement's entries: a kind, or the usage of one instance."""

    __tablename__ = "statement_lines"
    __table_args__ = (
        UniqueConstraint(
            "statement_id", "position", name="uq_statement_lines_statement_id_position"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    statement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("statements.id"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)  # a ledger entry's kind
    description: Mapped[str] = mapped_column(Text, nullable=False)
    entry_count: Mapped[int] = mapped_column(Integer, nullable=False)
    instance_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("instances.id"))
    # Usage only: the seconds charged in the month and the instance's rate.
    seconds: Mapped[int | None] = mapped_column(BigInteger)
    rate_millicents_per_hour: Mapped[int | None] = mapped_column(BigInteger)
    amount_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
