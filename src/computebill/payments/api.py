"""Checkout, the caller's orders and an admin's refund (docs/architecture.md §8); the Stripe
webhook: verify, store, acknowledge (processing happens in a job)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.audit import service as audit
from computebill.auth.dependencies import (
    BillingWriteAccess,
    ClientDep,
    CurrentAdminWithRecentLogin,
    ReadAccess,
)
from computebill.config import Settings
from computebill.credits.models import CreditTopUp
from computebill.db import commit
from computebill.deps import (
    CatalogDep,
    ClockDep,
    GatewayDep,
    IdempotencyKey,
    InboxDep,
    PublisherDep,
    ReadConnectionDep,
    SessionDep,
    SettingsDep,
)
from computebill.instances.schemas import instance_out
from computebill.instances.service import ListedInstance, list_instances, usage
from computebill.orders import service as orders
from computebill.orders.schemas import (
    OrderLineOut,
    OrderPage,
    RefundOut,
    StatusChangeOut,
    summary_fields,
)
from computebill.paging import PageCursor, PageLimit
from computebill.payments import cards, recharge, refunds
from computebill.payments import checkout as checkouts
from computebill.payments.gateway import StripeGateway
from computebill.payments.schemas import (
    AutoRechargeAttemptOut,
    AutoRechargeIn,
    AutoRechargeOut,
    CardSetupOut,
    CheckoutOut,
    OrderOut,
    PaymentMethodOut,
    PaymentMethodsOut,
    RefundIn,
    RefundRequestedOut,
    TopUpCheckoutOut,
    TopUpIn,
)
from computebill.queue.publisher import AppQueuePublisher

router = APIRouter(prefix="/api/v1", tags=["orders"])
webhook_router = APIRouter(tags=["webhooks"])


@router.post("/checkout", status_code=status.HTTP_201_CREATED, response_model=CheckoutOut)
async def checkout(
    principal: BillingWriteAccess,
    db: SessionDep,
    publisher: PublisherDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    gateway: GatewayDep,
    idempotency_key: IdempotencyKey = None,
) -> CheckoutOut:
    """Turn the cart into an order and a Stripe Checkout Session; answer where to pay."""
    now = clock.now()
    prepared = await checkouts.prepare_checkout(
        db, user_id=principal.user_id, catalog=catalog, idempotency_key=idempotency_key, now=now
    )
    await commit(db, publisher)  # the order outlives Stripe being away: a retry finds it
    order = await checkouts.open_checkout(
        db, gateway, prepared.order, public_base_url=str(settings.public_base_url), now=now
    )
    assert order.checkout_url is not None
    return CheckoutOut(order_id=order.id, checkout_url=order.checkout_url)


@router.post(
    "/credits/top-ups",
    status_code=status.HTTP_201_CREATED,
    response_model=TopUpCheckoutOut,
    tags=["credits"],
)
async def top_up(
    body: TopUpIn,
    principal: BillingWriteAccess,
    db: SessionDep,
    publisher: PublisherDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    gateway: GatewayDep,
    idempotency_key: IdempotencyKey = None,
) -> TopUpCheckoutOut:
    """Buy prepaid credit: a top-up and a Stripe Checkout Session for it; answer where to pay.
    The wallet is credited once Stripe says it is paid."""
    top_up = await open_top_up(
        db,
        publisher,
        gateway,
        settings,
        user_id=principal.user_id,
        amount_cents=body.amount_cents,
        currency=catalog.policy.currency,
        idempotency_key=idempotency_key,
        now=clock.now(),
        save_card=body.save_card,
    )
    assert top_up.checkout_url is not None
    return TopUpCheckoutOut(top_up_id=top_up.id, checkout_url=top_up.checkout_url)


async def open_top_up(
    db: AsyncSession,
    publisher: AppQueuePublisher,
    gateway: StripeGateway,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    amount_cents: int,
    currency: str,
    idempotency_key: str | None,
    now: datetime,
    save_card: bool = False,
) -> CreditTopUp:
    """A top-up's checkout in two units of work, for this route and the billing page's form:
    the pending top-up is committed, then its Checkout Session opened with no lock held."""
    prepared = await checkouts.prepare_top_up(
        db,
        user_id=user_id,
        amount_cents=amount_cents,
        currency=currency,
        minimum_cents=settings.top_up_min_cents,
        maximum_cents=settings.top_up_max_cents,
        idempotency_key=idempotency_key,
        now=now,
        save_card=save_card,
    )
    await commit(db, publisher)  # the top-up outlives Stripe being away: a retry finds it
    return await checkouts.open_top_up_checkout(
        db, gateway, prepared.top_up, public_base_url=str(settings.public_base_url), now=now
    )


@router.post(
    "/payment-methods/setup",
    status_code=status.HTTP_201_CREATED,
    response_model=CardSetupOut,
    tags=["payment methods"],
)
async def set_up_card(
    principal: BillingWriteAccess,
    db: SessionDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    gateway: GatewayDep,
) -> CardSetupOut:
    """Save a card for auto-recharge: answer Stripe's page (a Checkout Session in setup mode).
    The card is stored, and made the default, once Stripe says it is set up."""
    url = await card_setup_url(
        db,
        gateway,
        settings,
        user_id=principal.user_id,
        currency=catalog.policy.currency,
        now=clock.now(),
    )
    return CardSetupOut(checkout_url=url)


async def card_setup_url(
    db: AsyncSession,
    gateway: StripeGateway,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    currency: str,
    now: datetime,
) -> str:
    """Where the user saves a card, for this route and the billing page's "Add a card"."""
    opened = await checkouts.open_card_setup(
        db,
        gateway,
        user_id=user_id,
        currency=currency,
        public_base_url=str(settings.public_base_url),
        now=now,
    )
    return opened.url


@router.get("/payment-methods", response_model=PaymentMethodsOut, tags=["payment methods"])
async def list_payment_methods(principal: ReadAccess, db: SessionDep) -> PaymentMethodsOut:
    """The caller's saved cards, the default first."""
    saved = await cards.list_cards(db, principal.user_id)
    return PaymentMethodsOut(payment_methods=[PaymentMethodOut.model_validate(c) for c in saved])


@router.delete(
    "/payment-methods/{card_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["payment methods"],
)
async def delete_payment_method(
    card_id: uuid.UUID, principal: BillingWriteAccess, db: SessionDep, gateway: GatewayDep
) -> Response:
    """Detach the card at Stripe and forget it; with no card left, auto-recharge pauses."""
    await cards.remove_card(db, gateway, user_id=principal.user_id, card_id=card_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def auto_recharge_out(db: AsyncSession, user_id: uuid.UUID) -> AutoRechargeOut:
    rule = await recharge.rule_of(db, user_id)
    attempts = [
        AutoRechargeAttemptOut.model_validate(a)
        for a in await recharge.recent_attempts(db, user_id)
    ]
    return AutoRechargeOut(
        enabled=rule is not None and rule.enabled,
        threshold_cents=rule.threshold_cents if rule else None,
        amount_cents=rule.amount_cents if rule else None,
        monthly_max_cents=rule.monthly_max_cents if rule else None,
        armed=rule.armed if rule else True,
        consecutive_failures=rule.consecutive_failures if rule else 0,
        paused_reason=rule.paused_reason if rule else None,
        next_attempt_at=rule.next_attempt_at if rule else None,
        attempts=attempts,
    )


@router.get("/credits/auto-recharge", response_model=AutoRechargeOut, tags=["credits"])
async def get_auto_recharge(principal: ReadAccess, db: SessionDep) -> AutoRechargeOut:
    """The caller's auto-recharge rule, why it is paused if it is, and its recent attempts."""
    return await auto_recharge_out(db, principal.user_id)


@router.put("/credits/auto-recharge", response_model=AutoRechargeOut, tags=["credits"])
async def put_auto_recharge(
    body: AutoRechargeIn, principal: BillingWriteAccess, db: SessionDep, settings: SettingsDep
) -> AutoRechargeOut:
    """Set the caller's auto-recharge: below `threshold_cents` of live balance, the default card
    is charged `amount_cents`, once per crossing. Enabling needs a saved card (409
    `no_saved_card`); enabling a paused rule resumes it."""
    await recharge.set_rule(
        db,
        principal.user_id,
        enabled=body.enabled,
        threshold_cents=body.threshold_cents,
        amount_cents=body.amount_cents,
        monthly_max_cents=body.monthly_max_cents,
        minimum_cents=settings.top_up_min_cents,
        maximum_cents=settings.top_up_max_cents,
    )
    return await auto_recharge_out(db, principal.user_id)


@router.get("/orders", response_model=OrderPage)
async def list_orders(
    principal: ReadAccess,
    db: ReadConnectionDep,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> Response:
    page = await orders.order_page(db, user_id=principal.user_id, limit=limit, cursor=cursor)
    listed = [summary_fields(order) for order in page.orders]
    # Built here, so not validated again; OrderPage documents it (docs/architecture.md §3).
    body = {"orders": listed, "next_cursor": page.next_cursor}
    return Response(to_json(body), media_type="application/json")


def _order_out(
    detail: orders.OrderDetail, instances: list[ListedInstance], *, now: datetime
) -> OrderOut:
    return OrderOut(
        **summary_fields(detail.order),
        checkout_session_id=detail.order.checkout_session_id,
        payment_intent_id=detail.order.payment_intent_id,
        needs_review=detail.order.needs_review,
        lines=[OrderLineOut.model_validate(line) for line in detail.lines],
        history=[StatusChangeOut.model_validate(change) for change in detail.history],
        refunds=[RefundOut.model_validate(refund) for refund in detail.refunds],
        instances=[instance_out(i, usage(i, now=now)) for i in instances],
    )


@router.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(
    order_id: uuid.UUID, principal: ReadAccess, db: SessionDep, clock: ClockDep
) -> OrderOut:
    detail = await orders.get_order(db, user_id=principal.user_id, order_id=order_id)
    instances = await list_instances(
        await db.connection(), user_id=principal.user_id, order_id=order_id
    )
    return _order_out(detail, instances, now=clock.now())


@router.post(
    "/admin/orders/{order_id}/refund",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RefundRequestedOut,
)
async def refund_order(
    order_id: uuid.UUID,
    body: RefundIn,
    admin: CurrentAdminWithRecentLogin,
    db: SessionDep,
    gateway: GatewayDep,
    clock: ClockDep,
    client: ClientDep,
    idempotency_key: IdempotencyKey = None,
) -> RefundRequestedOut:
    """Refund all or part of an order; its state follows when Stripe's webhook arrives. The
    audit log records the request. Needs a recent login."""
    refund_id, amount = await refunds.request_refund(
        db,
        gateway,
        order_id=order_id,
        amount_cents=body.amount_cents,
        idempotency_key=idempotency_key,
    )
    await audit.record(
        db,
        await audit.signed_in_actor(db, admin.user_id, client),
        audit.AuditAction.ORDER_REFUNDED,
        target_type="order",
        target_id=str(order_id),
        after={"refund_id": refund_id, "amount_cents": amount},
        now=clock.now(),
    )
    return RefundRequestedOut(refund_id=refund_id, amount_cents=amount)


@webhook_router.post(
    "/webhooks/stripe",
    summary="Stripe events (signed); 200 once stored, 400 when the signature does not verify",
)
async def stripe_webhook(request: Request, gateway: GatewayDep, inbox: InboxDep) -> JSONResponse:
    payload = await request.body()  # the raw bytes: the signature covers them exactly
    event = gateway.verify_webhook(payload, request.headers.get("stripe-signature", ""))
    # Returns once the batch the event joined has committed (docs/architecture.md §5.1).
    new = await inbox.store(event)
    return JSONResponse({"received": True, "duplicate": not new})
