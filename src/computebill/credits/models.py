from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Uuid

from computebill.db import Base, TimestampMixin


class EntryKind(StrEnum):
    TOP_UP = "top_up"
    TOP_UP_REVERSAL = "top_up_reversal"  # a top-up refunded or disputed
    USAGE = "usage"
    UNUSED_TIME = "unused_time"  # prepaid hours given back as credit
    GRANT = "grant"  # promotional, may expire
    EXPIRY = "expiry"  # what is left of a grant when it expires
    ADJUSTMENT = "adjustment"  # by an admin, with a reason
    PURCHASE = "purchase"  # hours of a fixed-hours instance bought with credit (an extension)


# What each kind may move the balance by: credits are positive, charges negative; an admin's
# adjustment goes either way. The migration holds the same CHECKs (docs/architecture.md §4).
_KINDS = ", ".join(f"'{kind.value}'" for kind in EntryKind)
_CREDITS = ", ".join(
    f"'{k.value}'" for k in (EntryKind.TOP_UP, EntryKind.UNUSED_TIME, EntryKind.GRANT)
)
_CHARGES = ", ".join(
    f"'{k.value}'"
    for k in (EntryKind.TOP_UP_REVERSAL, EntryKind.USAGE, EntryKind.EXPIRY, EntryKind.PURCHASE)
)


class CreditAccount(TimestampMixin, Base):
    """A user's wallet: the balance, changed only together with an entry of the ledger, under
    this row's lock, so it always equals the sum of the user's entries."""

    __tablename__ = "credit_accounts"
    # The overview's accounts in debt: few, read through this index alone.
    __table_args__ = (
        Index(
            "ix_credit_accounts_negative",
            "balance_millicents",
            postgresql_where=text("balance_millicents < 0"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True
    )
    balance_millicents: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0")
    )


class CreditEntry(Base):
    """One posting of the ledger. Append-only: the database refuses UPDATE and DELETE (a trigger
    of the migration); a correction is a new entry."""

    __tablename__ = "credit_entries"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_KINDS})", name="kind"),
        CheckConstraint("amount_millicents <> 0", name="amount_not_zero"),
        CheckConstraint(
            f"(kind NOT IN ({_CREDITS}) OR amount_millicents > 0)"
            f" AND (kind NOT IN ({_CHARGES}) OR amount_millicents < 0)",
            name="amount_sign_fits_kind",
        ),
        CheckConstraint(
            "kind <> 'adjustment' OR (reason IS NOT NULL AND btrim(reason) <> '')",
            name="adjustment_has_reason",
        ),
        CheckConstraint("expires_at IS NULL OR kind = 'grant'", name="only_grants_expire"),
        Index(
            "ix_credit_entries_user_id_created_at_id",
            "user_id",
            text("created_at DESC"),
            text("id DESC"),
        ),
        # What an order or an instance was credited or charged (unused time, usage).
        Index(
            "ix_credit_entries_order_id", "order_id", postgresql_where=text("order_id IS NOT NULL")
        ),
        Index(
            "ix_credit_entries_instance_id",
            "instance_id",
            postgresql_where=text("instance_id IS NOT NULL"),
        ),
        # The usage API sums an account's usage entries of a period (billing.service.usage_report)
        # from this index alone: usage is most of the ledger, one entry per instance and pass.
        Index(
            "ix_credit_entries_usage_user_id_created_at",
            "user_id",
            "created_at",
            postgresql_include=["instance_id", "amount_millicents"],
            postgresql_where=text("kind = 'usage'"),
        ),
        # A budget's check reads just the usage entries posted since its watermark
        # (instances.metering, budgets).
        Index(
            "ix_credit_entries_usage_user_id_position",
            "user_id",
            "position",
            postgresql_include=["amount_millicents", "created_at"],
            postgresql_where=text("kind = 'usage'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The order of postings: each account's entries are posted one at a time under its lock,
    # so within an account a later posting has a greater number. `created_at` comes from the
    # caller's clock and may tie or run out of order; this does not.
    position: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("credit_accounts.user_id"), nullable=False
    )
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    amount_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    balance_after_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Built from natural ids (`top_up:<payment intent>`, `usage:<instance>:<through second>`),
    # so whatever repeats a posting finds the first one instead of posting twice.
    idempotency_key: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    instance_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("instances.id"))
    order_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("orders.id"))
    payment_intent_id: Mapped[str | None] = mapped_column(Text)
    admin_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class CreditGrant(TimestampMixin, Base):
    """What is left of one promotional grant. Spent before paid credit, soonest expiry first
    (a grant without an expiry last); at its expiry what is left leaves the balance as an
    `expiry` entry (docs/architecture.md §4). Changed only under the account's lock."""

    __tablename__ = "credit_grants"
    __table_args__ = (
        CheckConstraint("amount_millicents > 0", name="amount_positive"),
        CheckConstraint(
            "remaining_millicents >= 0 AND remaining_millicents <= amount_millicents",
            name="remaining_within_amount",
        ),
        CheckConstraint(
            "expired_at IS NULL OR (expires_at IS NOT NULL AND remaining_millicents = 0)",
            name="expired_is_spent",
        ),
        # A user's grants that can still be spent, in the order they are spent.
        Index(
            "ix_credit_grants_spending_order",
            "user_id",
            "expires_at",  # ascending puts NULL (never expires) last
            "created_at",
            "grant_entry_id",
            postgresql_where=text("remaining_millicents > 0"),
        ),
        # The expiry sweep's grants: those with something left and an expiry.
        Index(
            "ix_credit_grants_expiring",
            "expires_at",
            postgresql_where=text("remaining_millicents > 0 AND expires_at IS NOT NULL"),
        ),
    )

    grant_entry_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("credit_entries.id"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("credit_accounts.user_id"), nullable=False
    )
    amount_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    remaining_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TopUpStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"  # credited: its `top_up` entry is posted
    EXPIRED = "expired"
    PAYMENT_FAILED = "payment_failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"


def _top_up_status_enum() -> SqlEnum:
    return SqlEnum(
        TopUpStatus, name="credit_top_up_status", values_callable=lambda e: [m.value for m in e]
    )


class TopUpSource(StrEnum):
    CHECKOUT = "checkout"  # the customer paid on Stripe's Checkout page
    AUTO_RECHARGE = "auto_recharge"  # charged off-session to a saved card


class CreditTopUp(TimestampMixin, Base):
    """Credit bought through a Stripe Checkout Session. Its state follows Stripe (payments
    applies the events); the wallet moves only through ledger entries keyed by the payment
    (docs/architecture.md §4, top-ups)."""

    __tablename__ = "credit_top_ups"
    __table_args__ = (
        CheckConstraint("amount_cents > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_cents >= 0 AND refunded_cents <= amount_cents", name="refunded_within_amount"
        ),
        # The Idempotency-Key lookup and reconciliation of pending top-ups.
        Index("ix_credit_top_ups_user_id_idempotency_key", "user_id", "idempotency_key"),
        Index("ix_credit_top_ups_status_created_at", "status", "created_at"),
        # The overview's money in, by the time top-ups were paid.
        Index("ix_credit_top_ups_paid_at", "paid_at"),
        CheckConstraint("source IN ('checkout', 'auto_recharge')", name="source"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    status: Mapped[TopUpStatus] = mapped_column(_top_up_status_enum(), nullable=False)
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    refunded_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    checkout_url: Mapped[str | None] = mapped_column(String(2048))
    checkout_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(
        String(20), nullable=False, default=TopUpSource.CHECKOUT, server_default="checkout"
    )
    # Checkout only: the session asks Stripe to keep the card for off-session charges.
    save_card: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )


class CreditBudget(TimestampMixin, Base):
    """An account's monthly spend limit on usage (top-ups are not spending), and how much of the
    month it has counted (docs/architecture.md §4, budgets).

    The month's spend is kept as a running sum: `spent_millicents` holds the usage entries of
    `month` up to ledger position `counted_through_position`, so each check reads only the
    entries posted since (an account's postings take its lock, so its positions commit in
    order). `alerted_percent` is the highest alert sent for `month` (0, 80 or 100)."""

    __tablename__ = "credit_budgets"
    __table_args__ = (
        CheckConstraint("monthly_limit_cents > 0", name="limit_positive"),
        CheckConstraint("spent_millicents >= 0", name="spent_not_negative"),
        CheckConstraint("alerted_percent IN (0, 80, 100)", name="alerted_percent_known"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    monthly_limit_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    stop_running: Mapped[bool] = mapped_column(Boolean, nullable=False)
    month: Mapped[date] = mapped_column(Date, nullable=False)
    spent_millicents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    counted_through_position: Mapped[int] = mapped_column(BigInteger, nullable=False)
    alerted_percent: Mapped[int] = mapped_column(Integer, nullable=False)
