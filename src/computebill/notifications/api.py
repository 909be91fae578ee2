"""What the mail backend sent, for admins (the `outbox` backend of development and tests)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from computebill.auth.dependencies import CurrentAdmin
from computebill.deps import SessionDep
from computebill.mail.service import recent_outbox

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class OutboxEmailOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    recipient: str
    subject: str
    body: str
    status: str  # queued, sent or failed
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime


class Outbox(BaseModel):
    emails: list[OutboxEmailOut]


@router.get("/outbox", response_model=Outbox)
async def outbox(admin: CurrentAdmin, db: SessionDep) -> Outbox:
    return Outbox(emails=[OutboxEmailOut.model_validate(e) for e in await recent_outbox(db)])
