"""The operator's JSON API beyond what each domain offers itself (docs/architecture.md §8):
the overview, finding a customer and their page, ending a customer's sessions and replaying a
Stripe event. Every action is audited."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from computebill.audit import service as audit
from computebill.auth import service as accounts
from computebill.auth.dependencies import ClientDep, CurrentAdminWithRecentLogin, CurrentStaff
from computebill.auth.schemas import RevokedCount
from computebill.console import service
from computebill.console.schemas import (
    AuthEventOut,
    CustomerDetailOut,
    CustomerList,
    CustomerOut,
    OperatorSessionOut,
    OverviewOut,
    QueueDepthOut,
    ReplayQueued,
    overview_out,
)
from computebill.deps import AuthDep, ClockDep, PublisherDep, ReportConnectionDep, SessionDep
from computebill.errors import DependencyUnavailable
from computebill.instances.schemas import InstanceOut, instance_fields
from computebill.instances.service import usage
from computebill.ops.api import read_queue
from computebill.orders.schemas import OrderSummaryOut, summary_fields
from computebill.paging import PageLimit
from computebill.payments.api import EventIdPath
from computebill.payments.inbox import replay_event_audited
from computebill.queue.publisher import AppQueuePublisher

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


async def queue_depth(publisher: AppQueuePublisher) -> QueueDepthOut | None:
    """The job queue's depth, or None while it cannot be reached (the overview still answers)."""
    try:
        queue = await read_queue(publisher)
    except DependencyUnavailable:
        return None
    return QueueDepthOut(
        queued=len(queue.queued),
        running=len(queue.running),
        scheduled=len(queue.scheduled),
        failed=len(queue.failed),
    )


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
    now = clock.now()
    view = await service.customer_view(db, user_id, now=now)
    return CustomerDetailOut(
        customer=CustomerOut.model_validate(view.user),
        sessions=[OperatorSessionOut.model_validate(session) for session in view.sessions],
        orders=[OrderSummaryOut.model_validate(summary_fields(o)) for o in view.orders],
        instances=[
            InstanceOut.model_validate(instance_fields(i, usage(i, now=now)))
            for i in view.instances
        ],
        balance_millicents=view.balance_millicents,
        auth_events=[AuthEventOut.model_validate(event) for event in view.auth_events],
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
    count = await service.revoke_customer_sessions(
        db,
        user_id,
        operator_id=staff.user_id,
        revocations=auth.revocations,
        client=client,
        now=clock.now(),
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


@router.get("/overview", response_model=OverviewOut)
async def overview(
    staff: CurrentStaff, db: ReportConnectionDep, clock: ClockDep, publisher: PublisherDep
) -> OverviewOut:
    """The platform at a glance: money taken, GPU time sold and used, live instances by model,
    what needs an operator, and the job queue. Admins and support."""
    figures = await service.overview(db, now=clock.now())
    return overview_out(figures, await queue_depth(publisher))
