"""Background jobs of the payments domain: thin, they load and call the service."""

from __future__ import annotations

import uuid
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
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        order_ids = await events.pending_orders_to_reconcile(db, now=ctx.clock.now())
    for order_id in order_ids:
        await reconcile_one(ctx, order_id)


async def reconcile_one(ctx: JobContext, order_id: uuid.UUID) -> None:
    try:
        async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
            outcome = await events.reconcile_order(db, ctx.gateway, order_id, now=ctx.clock.now())
        log.info("order_reconciled", order_id=str(order_id), outcome=outcome)
    except Exception as error:
        log.warning("order_reconciliation_failed", order_id=str(order_id), error=repr(error))
