"""Background jobs of the payments domain: thin, they load and call the service."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from computebill.db import unit_of_work
from computebill.jobs import JobContext, current_attempt
from computebill.payments import cards, events, inbox, recharge
from computebill.payments.terms import PaymentTerms

log = structlog.get_logger(__name__)


async def process_stripe_event(ctx: JobContext, event_id: str) -> None:
    try:
        async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
            await events.process_event(
                db,
                ctx.gateway,
                event_id,
                terms=PaymentTerms.of(ctx.settings),
                now=ctx.clock.now(),
            )
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
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        attempt_ids = await recharge.stale_attempts(
            db,
            now=ctx.clock.now(),
            older_than=timedelta(seconds=ctx.settings.auto_recharge_reconcile_after_seconds),
        )
    for attempt_id in attempt_ids:
        await reconcile_one(
            ctx,
            "auto_recharge_attempt",
            attempt_id,
            recharge.recharge_again,
        )


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
            outcome = await reconcile(
                db,
                ctx.gateway,
                pending_id,
                terms=PaymentTerms.of(ctx.settings),
                now=ctx.clock.now(),
            )
        log.info(f"{what}_reconciled", **{f"{what}_id": str(pending_id)}, outcome=outcome)
    except Exception as error:
        log.warning(
            f"{what}_reconciliation_failed", **{f"{what}_id": str(pending_id)}, error=repr(error)
        )


# Saved cards and auto-recharge (docs/architecture.md §4, auto-recharge) -------------------------


async def save_payment_method(ctx: JobContext, customer_id: str, payment_method_id: str) -> None:
    """A card Stripe attached to the Customer (a setup, or a top-up paid with "save this card"):
    stored and made the default."""
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await cards.save_card(
            db, ctx.gateway, customer_id=customer_id, payment_method_id=payment_method_id
        )


async def save_setup_card(ctx: JobContext, customer_id: str, setup_intent_id: str) -> None:
    """A setup-mode Checkout Session completed: the card its SetupIntent saved is stored."""
    method_id = await ctx.gateway.payment_method_of_setup(setup_intent_id)
    if method_id is None:
        log.warning("setup_without_card", setup_intent_id=setup_intent_id)
        return
    await save_payment_method(ctx, customer_id, method_id)


async def send_auto_recharge_email(ctx: JobContext, user_id: str, about: str) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        await recharge.send_auto_recharge_email(
            db,
            uuid.UUID(user_id),
            about,
            backend=ctx.settings.mail_backend,
            public_base_url=str(ctx.settings.public_base_url),
            now=ctx.clock.now(),
        )


async def check_auto_recharge(ctx: JobContext) -> None:
    """Every AUTO_RECHARGE_CHECK_SECONDS and after each settlement pass: charge the accounts
    below their auto-recharge threshold (once per crossing), and re-arm those back above it."""
    after: uuid.UUID | None = None
    while True:
        async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
            found = await recharge.candidates(db, now=ctx.clock.now(), after=after)
        await _act_on(ctx, found)
        if found.next_after is None:
            return
        after = found.next_after


async def _act_on(ctx: JobContext, found: recharge.Candidates) -> None:
    """Re-arm and charge one page of the check's candidates, each in transactions of its own."""
    for user_id in found.to_rearm:
        async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
            await recharge.rearm(db, user_id, now=ctx.clock.now())
    for user_id in found.due:
        try:
            async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
                planned = await recharge.begin_charge(db, user_id, now=ctx.clock.now())
            if planned is not None:
                await _charge_and_settle(ctx, planned)
        except Exception as error:
            # One account's trouble leaves the others charged; a pending attempt is reconciled.
            log.warning("auto_recharge_check_failed", user_id=str(user_id), error=repr(error))


async def _charge_and_settle(ctx: JobContext, planned: recharge.PlannedCharge) -> str:
    """Steps B and C of a charge step A committed (or reconciliation found pending)."""
    outcome = await recharge.charge(ctx.gateway, planned)
    if outcome is None:
        return "Stripe unreachable: left pending"
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as db:
        return await recharge.settle_planned(
            db,
            planned,
            outcome,
            terms=PaymentTerms.of(ctx.settings),
            now=ctx.clock.now(),
        )
