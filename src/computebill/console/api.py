"""The operator's JSON API beyond what each domain offers itself (docs/architecture.md §8):
ending a customer's sessions and replaying a Stripe event. Every call is audited."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, status

from computebill.audit import service as audit
from computebill.auth import service as accounts
from computebill.auth.dependencies import ClientDep, CurrentAdminWithRecentLogin, CurrentStaff
from computebill.auth.schemas import RevokedCount
from computebill.console.schemas import ReplayQueued
from computebill.deps import AuthDep, ClockDep, SessionDep
from computebill.errors import NotFound
from computebill.payments.inbox import replay_event

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.post("/customers/{user_id}/sessions/revoke", response_model=RevokedCount)
async def revoke_customer_sessions(
    user_id: uuid.UUID,
    staff: CurrentStaff,
    db: SessionDep,
    auth: AuthDep,
    clock: ClockDep,
    client: ClientDep,
) -> RevokedCount:
    """End every session of a customer (a stolen laptop, a takeover): their access tokens stop
    working at once. Admins and support."""
    if await accounts.get_active_user(db, user_id) is None:
        raise accounts.UnknownCustomer("There is no such customer.")
    now = clock.now()
    count = await accounts.revoke_other_sessions(
        db,
        user_id=user_id,
        keep_session_id=None,
        reason=accounts.EventType.SESSION_REVOKED,
        revocations=auth.revocations,
        now=now,
        client=client,
    )
    await audit.record(
        db,
        await audit.signed_in_actor(db, staff.user_id, client),
        audit.AuditAction.SESSIONS_REVOKED,
        target_type="user",
        target_id=str(user_id),
        after={"revoked": count},
        now=now,
    )
    return RevokedCount(revoked=count)


@router.post(
    "/events/{event_id}/replay", status_code=status.HTTP_202_ACCEPTED, response_model=ReplayQueued
)
async def replay_stripe_event(
    event_id: Annotated[str, Path(max_length=255)],
    admin: CurrentAdminWithRecentLogin,
    db: SessionDep,
    clock: ClockDep,
    client: ClientDep,
) -> ReplayQueued:
    """Process a stored Stripe event again (one that failed for good, say): 202 once queued.
    Admins with a recent login."""
    if not await replay_event(db, event_id):
        raise NotFound(f"No stored event {event_id!r}.")
    await audit.record(
        db,
        await audit.signed_in_actor(db, admin.user_id, client),
        audit.AuditAction.EVENT_REPLAYED,
        target_type="stripe_event",
        target_id=event_id,
        now=clock.now(),
    )
    return ReplayQueued(event_id=event_id, status="pending")
