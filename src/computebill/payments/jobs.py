"""Background jobs of the payments domain: thin, they load and call the service."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from computebill.db import unit_of_work
from computebill.jobs import JobContext, current_attempt
from computebill.payments import events, inbox

log = structlog.get_logger(__name__)


async def process_stripe_event(ctx: JobContext, event_id: str) -> None:
    try:
        async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
            await events.process_event(db, ctx.gateway, event_id, now=ctx.clock.now())
    except Exception as error:
        # Recorded in a transaction of its own: the failed one rolled back.
        async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
            await inbox.record_event_failure(
                db, event_id, error=repr(error), final=current_attempt.get().is_last
            )
        raise


async def sweep_unprocessed_events(ctx: JobContext) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        count = await inbox.requeue_unprocessed_events(
            db,
            now=ctx.clock.now(),
            sweep_after=timedelta(seconds=ctx.settings.event_sweep_after_seconds),
        )
    if count:
        log.info("unprocessed_events_requeued", count=count)


async def reconcile_pending_orders(ctx: JobContext) -> None:
    """Orders and top-ups pending for more than five minutes: Stripe is asked about each."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        order_ids = await events.pending_orders_to_reconcile(db, now=ctx.clock.now())
        top_up_ids = await events.pending_top_ups_to_reconcile(db, now=ctx.clock.now())
    for order_id in order_ids:
        await reconcile_one(ctx, "order", order_id, events.reconcile_order)
    for top_up_id in top_up_ids:
        await reconcile_one(ctx, "top_up", top_up_id, events.reconcile_top_up)


async def reconcile_one(
    ctx: JobContext,
    what: str,
    pending_id: uuid.UUID,
    reconcile: Callable[..., Awaitable[str]],
) -> None:
    """One pending order or top-up (`what`) reconciled in a transaction of its own; a failure
    is logged and left to the next run."""
    try:
        async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
            outcome = await reconcile(db, ctx.gateway, pending_id, now=ctx.clock.now())
        log.info(f"{what}_reconciled", **{f"{what}_id": str(pending_id)}, outcome=outcome)
    except Exception as error:
        log.warning(
            f"{what}_reconciliation_failed", **{f"{what}_id": str(pending_id)}, error=repr(error)
        )
