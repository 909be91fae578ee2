"""What the API shows of the caller's credits (the balance and the ledger), and an admin's
grant or adjustment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from computebill.credits.models import EntryKind
from computebill.credits.service import AdminCreditKind, AdminPosting, ListedEntry


class EntryOut(BaseModel):
    id: uuid.UUID
    kind: EntryKind
    amount_millicents: int = Field(description="Signed: credit positive, charge negative")
    balance_after_millicents: int
    created_at: datetime
    instance_id: uuid.UUID | None = Field(description="The instance whose use or time it is")
    order_id: uuid.UUID | None
    payment_intent_id: str | None = Field(description="The Stripe payment of a top-up")
    reason: str | None = Field(description="Why an adjustment was made")
    expires_at: datetime | None = Field(description="When what is left of a grant expires")


class EntryPage(BaseModel):
    entries: list[EntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


def entry_fields(entry: ListedEntry) -> dict[str, Any]:
    """An entry as the ledger list shows it: `EntryOut`'s fields, in its order."""
    return {name: getattr(entry, name) for name in EntryOut.model_fields}


MAX_ADMIN_CREDIT_CENTS = 100_000_000  # $1,000,000 either way: beyond it, a typo


class AdminCreditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_cents: int = Field(
        ge=-MAX_ADMIN_CREDIT_CENTS,
        le=MAX_ADMIN_CREDIT_CENTS,
        description="A grant's is positive; an adjustment's is signed and not zero",
    )
    kind: AdminCreditKind
    reason: str = Field(max_length=500, description="Why; stored on the entry")
    expires_at: AwareDatetime | None = Field(
        default=None, description="A grant only: when what is left of it expires (future)"
    )

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # 9999-12-31T23:59:59-01:00 parses, but is past the last moment a datetime can hold.
        try:
            return None if value is None else value.astimezone(UTC)
        except OverflowError as error:
            raise ValueError("The time is out of range.") from error


class AdminEntryOut(EntryOut):
    admin_user_id: uuid.UUID | None


class GrantOut(BaseModel):
    grant_entry_id: uuid.UUID
    amount_millicents: int
    remaining_millicents: int = Field(description="What is left of it to spend")
    expires_at: datetime | None = Field(description="None: it never expires")


class AdminCreditOut(BaseModel):
    entry: AdminEntryOut
    grant: GrantOut | None = Field(description="The grant a posting of kind `grant` opened")
    repeated: bool = Field(
        description="True: the Idempotency-Key was posted before; this is that posting"
    )


def admin_credit_out(posting: AdminPosting) -> AdminCreditOut:
    entry = posting.posted.entry
    grant = posting.grant
    return AdminCreditOut(
        entry=AdminEntryOut.model_validate(
            {name: getattr(entry, name) for name in AdminEntryOut.model_fields}
        ),
        grant=None
        if grant is None
        else GrantOut.model_validate(
            {name: getattr(grant, name) for name in GrantOut.model_fields}
        ),
        repeated=not posting.posted.created,
    )
