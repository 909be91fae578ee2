"""The caller's credits: the balance and the ledger (docs/architecture.md §8)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic_core import to_json

from computebill.auth.dependencies import CurrentPrincipal
from computebill.credits import service
from computebill.credits.schemas import CreditsOut, EntryPage, entry_fields
from computebill.deps import ReadConnectionDep
from computebill.money import cents_rounded_down
from computebill.paging import PageCursor, PageLimit

router = APIRouter(prefix="/api/v1/credits", tags=["credits"])


@router.get("", response_model=CreditsOut)
async def get_credits(principal: CurrentPrincipal, db: ReadConnectionDep) -> CreditsOut:
    millicents = await service.balance(db, principal.user_id)
    return CreditsOut(balance_cents=cents_rounded_down(millicents), balance_millicents=millicents)


@router.get("/entries", response_model=EntryPage)
async def list_entries(
    principal: CurrentPrincipal,
    db: ReadConnectionDep,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> Response:
    """The caller's ledger, newest first, a page at a time."""
    page = await service.entries_page(db, principal.user_id, cursor=cursor, limit=limit)
    listed = [entry_fields(entry) for entry in page.entries]
    # Built here, so not validated again; EntryPage documents it (docs/architecture.md §3).
    return Response(
        to_json({"entries": listed, "next_cursor": page.next_cursor}), media_type="application/json"
    )
