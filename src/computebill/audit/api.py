"""The audit log for the console's operators (docs/architecture.md §8)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from computebill.audit import service
from computebill.audit.schemas import AuditEntryOut, AuditPage
from computebill.auth.dependencies import CurrentStaff
from computebill.deps import ReportConnectionDep
from computebill.paging import PageCursor, PageLimit

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get("/audit", response_model=AuditPage)
async def audit_log(
    staff: CurrentStaff,
    db: ReportConnectionDep,
    actor: Annotated[
        str | None, Query(max_length=320, description="An operator's id or address")
    ] = None,
    action: Annotated[str | None, Query(max_length=60, description="e.g. `order.refunded`")] = None,
    limit: PageLimit = 50,
    cursor: PageCursor = None,
) -> AuditPage:
    """Every operator action, newest first, a page at a time; admins and support read it."""
    entries, next_cursor = await service.audit_page(
        db, actor=actor, action=action, limit=limit, cursor=cursor
    )
    return AuditPage(
        entries=[AuditEntryOut.model_validate(entry) for entry in entries],
        next_cursor=next_cursor,
    )
