"""The caller's money right now: `GET /api/v1/credits` (docs/architecture.md §8)."""

from __future__ import annotations

from fastapi import APIRouter

from computebill.auth.dependencies import CurrentPrincipal
from computebill.billing import service
from computebill.billing.schemas import CreditsOut, credits_out
from computebill.deps import ClockDep, ReadConnectionDep

router = APIRouter(prefix="/api/v1/credits", tags=["credits"])


@router.get("", response_model=CreditsOut)
async def get_credits(
    principal: CurrentPrincipal, db: ReadConnectionDep, clock: ClockDep
) -> CreditsOut:
    """The live balance (the ledger's less what running instances have used since their last
    settlement), the burn rate, the runway and the grants left: read again, it has moved."""
    summary = await service.credit_summary(db, principal.user_id, now=clock.now())
    return credits_out(summary)
