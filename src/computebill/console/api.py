"""The operator's JSON API beyond what each domain offers itself (docs/architecture.md §8):
ending a customer's sessions and replaying a Stripe event. Every call is audited."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from computebill.audit import service as audit
from computebill.auth import service as accounts
from computebill.auth.dependencies import ClientDep, CurrentAdminWithRecentLogin, CurrentStaff
from computebill.auth.schemas import RevokedCount
from computebill.console.schemas import (
    AuthEventOut,
    CustomerDetailOut,
    CustomerList,
    CustomerOut,
    OperatorSessionOut,
    ReplayQueued,
)
from computebill.credits.service import balance
from computebill.deps import AuthDep, ClockDep, SessionDep
from computebill.instances.schemas import InstanceOut, instance_fields
from computebill.instances.service import list_instances, usage
from computebill.orders.schemas import OrderSummaryOut, summary_fields
from computebill.orders.service import order_page
from computebill.paging import PageLimit
from computebill.payments.api import EventIdPath
from computebill.payments.inbox import replay_event_audited

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

# What a customer's page shows of each list: the latest, bounded.
RECENT = 20


@router.get("/customers", response_model=CustomerList)
async def search_customers(
    staff: CurrentStaff,
    db: SessionDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=320,
            pattern=r"^[^\x00-\x1f]+$",  # no control characters: PostgreSQL text holds no NUL
            description="Id, address or name",
        ),
    ],
    limit: PageLimit = 20,
) -> CustomerList:
    """Customers by id, by the start of their address, or by a word of their name. Admins and
    support."""
    found = await accounts.search_accounts(db, q, limit=limit)
    return CustomerList(customers=[CustomerOut.model_validate(user) for user in found])


@router.get("/customers/{user_id}", response_model=CustomerDetailOut)
async def customer_detail(
    user_id: uuid.UUID,
    staff: CurrentStaff,
    db: SessionDep,
    clock: ClockDep,
) -> CustomerDetailOut:
    """A customer as support sees them: profile and role, live sessions, the latest orders,
    their instances, the credit balance and the latest authentication events."""
    user = await accounts.get_active_user(db, user_id)
    if user is None:
        raise accounts.UnknownCustomer("There is no such customer.")
    now = clock.now()
    reader = await db.connection()
    orders = await order_page(reader, user_id=user_id, limit=RECENT, cursor=None)
    return CustomerDetailOut(
        customer=CustomerOut.model_validate(user),
        sessions=[
            OperatorSessionOut.model_validate(session)
            for session in await accounts.list_sessions(db, user_id=user_id, now=now)
        ],
        orders=[OrderSummaryOut.model_validate(summary_fields(o)) for o in orders.orders],
        instances=[
            InstanceOut.model_validate(instance_fields(i, usage(i, now=now)))
            for i in await list_instances(reader, user_id=user_id)
        ],
        balance_millicents=await balance(db, user_id),
        auth_events=[
            AuthEventOut.model_validate(event)
            for event in await accounts.recent_auth_events(db, user_id, limit=RECENT)
        ],
    )


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
    event_id: EventIdPath,
    admin: CurrentAdminWithRecentLogin,
    db: SessionDep,
    clock: ClockDep,
    client: ClientDep,
) -> ReplayQueued:
    """Process a stored Stripe event again (one that failed for good, say): 202 once queued.
    Admins with a recent login."""
    await replay_event_audited(
        db,
        event_id,
        actor=await audit.signed_in_actor(db, admin.user_id, client),
        now=clock.now(),
    )
    return ReplayQueued(event_id=event_id, status="pending")
