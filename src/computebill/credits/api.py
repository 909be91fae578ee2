"""The caller's credits: the balance and the ledger; an admin's grants and adjustments
(docs/architecture.md §8)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status
from pydantic_core import to_json

from computebill.auth.dependencies import (
    ClientDep,
    CurrentAdminWithRecentLogin,
    ReadAccess,
)
from computebill.credits import service
from computebill.credits.schemas import (
    AdminCreditIn,
    AdminCreditOut,
    EntryPage,
    admin_credit_out,
    entry_fields,
)
from computebill.deps import ClockDep, IdempotencyKey, ReadConnectionDep, SessionDep
from computebill.paging import PageCursor, PageLimit

router = APIRouter(prefix="/api/v1/credits", tags=["credits"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["credits"])


@router.get("/entries", response_model=EntryPage)
async def list_entries(
    principal: ReadAccess,
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


@admin_router.post(
    "/customers/{user_id}/credits",
    status_code=status.HTTP_201_CREATED,
    response_model=AdminCreditOut,
)
async def post_customer_credit(
    user_id: uuid.UUID,
    body: AdminCreditIn,
    admin: CurrentAdminWithRecentLogin,
    db: SessionDep,
    clock: ClockDep,
    client: ClientDep,
    idempotency_key: IdempotencyKey = None,
) -> AdminCreditOut:
    """Grant a customer promotional credit, or adjust their balance either way, with a reason;
    the entry names the admin, and the audit log records it. A retry with the same
    `Idempotency-Key` posts nothing more. Needs a recent login."""
    posting = await service.post_audited_admin_credit(
        db,
        user_id,
        admin_user_id=admin.user_id,
        client=client,
        kind=body.kind,
        amount_cents=body.amount_cents,
        reason=body.reason,
        expires_at=body.expires_at,
        request_key=idempotency_key,
        now=clock.now(),
    )
    return admin_credit_out(posting)
