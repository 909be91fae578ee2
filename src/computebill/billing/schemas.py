"""What the API shows of a customer's money right now."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from computebill.billing.service import CreditSummary
from computebill.money import MILLICENTS_PER_CENT, cents_rounded_down, round_half_up


class GrantOut(BaseModel):
    id: uuid.UUID = Field(description="The grant's ledger entry")
    amount_millicents: int
    remaining_millicents: int = Field(description="What is left, spent before paid credit")
    expires_at: datetime | None = Field(description="When what is left expires; None: never")


class CreditsOut(BaseModel):
    balance_cents: int = Field(
        description="The live balance in whole cents, rounded down (never more than there is)"
    )
    live_balance_millicents: int = Field(
        description="The ledger's balance less what running instances have used and is not"
        " settled yet: it moves every second"
    )
    settled_balance_millicents: int = Field(description="The ledger's balance: its entries' sum")
    burn_rate_cents_per_hour: int = Field(
        description="What the running pay-as-you-go instances cost an hour, to the nearest cent"
    )
    burn_rate_millicents_per_hour: int
    runway_seconds: int | None = Field(
        description="How long the live balance lasts at the burn rate; None while nothing burns"
    )
    exhausts_at: datetime | None = Field(description="When the live balance reaches zero")
    grants: list[GrantOut]


def credits_out(summary: CreditSummary) -> CreditsOut:
    figures = summary.figures
    return CreditsOut(
        balance_cents=cents_rounded_down(figures.live_balance_millicents),
        live_balance_millicents=figures.live_balance_millicents,
        settled_balance_millicents=figures.balance_millicents,
        burn_rate_cents_per_hour=round_half_up(
            figures.burn_millicents_per_hour, MILLICENTS_PER_CENT
        ),
        burn_rate_millicents_per_hour=figures.burn_millicents_per_hour,
        runway_seconds=figures.runway_seconds,
        exhausts_at=figures.exhausts_at,
        grants=[
            GrantOut(
                id=grant.grant_entry_id,
                amount_millicents=grant.amount_millicents,
                remaining_millicents=grant.remaining_millicents,
                expires_at=grant.expires_at,
            )
            for grant in summary.grants
        ],
    )
