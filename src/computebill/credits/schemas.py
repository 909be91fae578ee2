"""What the API shows of the caller's credits: the balance and the ledger."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from computebill.credits.models import EntryKind
from computebill.credits.service import ListedEntry


class CreditsOut(BaseModel):
    balance_cents: int = Field(
        description="The balance in whole cents, rounded down (never more than there is)"
    )
    balance_millicents: int = Field(description="The balance exactly, in 1/1000 ¢")


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
