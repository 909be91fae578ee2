"""Billing: what a customer's money looks like right now, from the credit ledger and the
metering of their running instances together (docs/architecture.md §4, pay as you go)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from computebill.credits.service import Grant, active_grants
from computebill.instances.metering import LiveFigures, live_figures


@dataclass(frozen=True, slots=True)
class CreditSummary:
    figures: LiveFigures
    grants: list[Grant]  # those that can still be spent, in the order they will be


async def credit_summary(
    db: AsyncConnection, user_id: uuid.UUID, *, now: datetime
) -> CreditSummary:
    """The live balance, burn rate, runway and grants of an account (two statements)."""
    figures = await live_figures(db, user_id, now=now)
    return CreditSummary(figures=figures, grants=await active_grants(db, user_id, now=now))
