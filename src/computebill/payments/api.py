"""Checkout, the caller's orders and an admin's refund (docs/architecture.md §8); the Stripe
webhook: verify, store, acknowledge (processing happens in a job)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.audit import service as audit
from computebill.auth.dependencies import (
    BillingWriteAccess,
    ClientDep,
    CurrentAdminWithRecentLogin,
    CurrentStaff,
    ReadAccess,
)
from computebill.catalog.service import Catalog
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
    ReportConnectionDep,
    SessionDep,
    SettingsDep,
)
from computebill.instances.models import Instance
from computebill.instances.schemas import instance_out
from computebill.instances.service import (
    ListedInstance,
    check_extendable,
    get_instance,
    list_instances,
    usage,
)
from computebill.orders import service as orders
from computebill.orders.models import Order, OrderStatus
from computebill.orders.schemas import (
    OrderLineOut,
    OrderPage,
    RefundOut,
    StatusChangeOut,
    summary_fields,
)
from computebill.paging import FilterDay, PageCursor, PageLimit
from computebill.payments import cards, inbox, recharge, refunds
from computebill.payments import checkout as checkouts
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import EventStatus, StripeEvent
from computebill.payments.schemas import (
    PLAIN_TEXT,
    AdminOrderOut,
    AdminOrderPage,
    AdminOrderSummaryOut,
    AutoRechargeAttemptOut,
    AutoRechargeIn,
    AutoRechargeOut,
    CardSetupOut,
    CheckoutOut,
    DisputeOut,
    EventOut,
    EventPage,
    EventSummaryOut,
    ExtensionIn,
    ExtensionOut,
    ExtensionQuoteOut,
    OrderOut,
    PaymentMethodOut,
    PaymentMethodsOut,
    RefundIn,
    RefundRequestedOut,
    TopUpCheckoutOut,
    TopUpIn,
)
from computebill.payments.terms import PaymentTerms
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
    "/instances/{instance_id}/extensions",
    status_code=status.HTTP_201_CREATED,
    response_model=ExtensionOut,
    tags=["instances"],
    responses={402: {"description": "insufficient_credit: the balance does not cover it"}},
)
async def extend_instance(
    instance_id: uuid.UUID,
    body: ExtensionIn,
    principal: BillingWriteAccess,
    db: SessionDep,
    publisher: PublisherDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    gateway: GatewayDep,
    idempotency_key: IdempotencyKey = None,
) -> ExtensionOut:
    """Buy `hours` more of a provisioning or running fixed-hours instance: by card (answers
    Stripe's page; the same instance is extended once the payment is confirmed) or from the
    credit balance (extended now; 402 `insufficient_credit` with `shortfall_cents`). 409
    `pay_as_you_go_not_extendable`, `instance_not_extendable`; 422 for hours outside the
    pricing policy's range; 404 for another's instance."""
    order, instance = await open_extension(
        db,
        publisher,
        gateway,
        settings,
        catalog,
        user_id=principal.user_id,
        instance_id=instance_id,
        hours=body.hours,
        pay_with=body.pay_with,
        idempotency_key=idempotency_key,
        now=clock.now(),
    )
    by_card = body.pay_with is checkouts.PayWith.CARD
    return ExtensionOut(
        order_id=order.id,
        instance_id=instance_id,
        hours=body.hours,
        price_cents=order.total_cents,
        currency=order.currency,
        pay_with=body.pay_with,
        checkout_url=order.checkout_url if by_card else None,
        expires_at=None if by_card or instance is None else instance.expires_at,
        paid_seconds=None if by_card or instance is None else instance.paid_seconds,
    )


@router.get(
    "/instances/{instance_id}/extensions/quote",
    response_model=ExtensionQuoteOut,
    tags=["instances"],
)
async def quote_instance_extension(
    instance_id: uuid.UUID,
    hours: Annotated[int, Query(ge=1)],
    principal: ReadAccess,
    db: SessionDep,
    catalog: CatalogDep,
) -> ExtensionQuoteOut:
    """What `hours` more of a provisioning or running fixed-hours instance cost now, by the
    pricing its purchase uses, and where its stop time would move; nothing is bought. 409
    `pay_as_you_go_not_extendable`, `instance_not_extendable`; 422 for hours outside the
    pricing policy's range; 404 for another's instance."""
    instance, _ = await get_instance(db, user_id=principal.user_id, instance_id=instance_id)
    check_extendable(instance)
    quote = checkouts.quote_extension(catalog, instance, hours=hours)
    added = timedelta(hours=hours)
    assert instance.paid_seconds is not None  # a fixed-hours instance's
    return ExtensionQuoteOut(
        instance_id=instance.id,
        hours=hours,
        price_cents=quote.price_cents,
        currency=quote.currency,
        expires_at=None if instance.expires_at is None else instance.expires_at + added,
        paid_seconds=instance.paid_seconds + hours * 3600,
    )


async def open_extension(
    db: AsyncSession,
    publisher: AppQueuePublisher,
    gateway: StripeGateway,
    settings: Settings,
    catalog: Catalog,
    *,
    user_id: uuid.UUID,
    instance_id: uuid.UUID,
    hours: int,
    pay_with: checkouts.PayWith,
    idempotency_key: str | None,
    now: datetime,
) -> tuple[Order, Instance | None]:
    """An extension, for this route and the dashboard's form: from credit, one unit of work (the
    order and the extended instance); by card, the pending order committed, then its Checkout
    Session opened with no lock held (the order, no instance)."""
    if pay_with is checkouts.PayWith.CREDITS:
        return await checkouts.extend_with_credit(
            db,
            user_id=user_id,
            catalog=catalog,
            instance_id=instance_id,
            hours=hours,
            idempotency_key=idempotency_key,
            seller=PaymentTerms.of(settings).seller,
            now=now,
        )
    prepared = await checkouts.prepare_extension_checkout(
        db,
        user_id=user_id,
        catalog=catalog,
        instance_id=instance_id,
        hours=hours,
        idempotency_key=idempotency_key,
        now=now,
    )
    await commit(db, publisher)  # the order outlives Stripe being away: a retry finds it
    order = await checkouts.open_checkout(
        db, gateway, prepared.order, public_base_url=str(settings.public_base_url), now=now
    )
    return order, None


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
    refund_id, amount = await refunds.refund_audited(
        db,
        gateway,
        order_id=order_id,
        amount_cents=body.amount_cents,
        reason=body.reason,
        idempotency_key=idempotency_key,
        actor=await audit.signed_in_actor(db, admin.user_id, client),
        now=clock.now(),
    )
    return RefundRequestedOut(refund_id=refund_id, amount_cents=amount)


# The console: every customer's orders and the Stripe inbox (docs/architecture.md §8) ------------


@router.get("/admin/orders", response_model=AdminOrderPage, tags=["admin"])
async def list_all_orders(
    staff: CurrentStaff,
    db: ReportConnectionDep,
    status: OrderStatus | None = None,
    review: Annotated[bool | None, Query(description="Only orders flagged for review")] = None,
    since: Annotated[FilterDay | None, Query(description="Made on or after this UTC day")] = None,
    until: Annotated[FilterDay | None, Query(description="Made on or before this UTC day")] = None,
    customer: Annotated[uuid.UUID | None, Query(description="The customer's user id")] = None,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> AdminOrderPage:
    """Every customer's orders, newest first, filtered. Admins and support."""
    filters = orders.order_filter(
        status=status, needs_review=review, since=since, until=until, user_id=customer
    )
    page = await orders.filtered_order_page(db, filters, limit=limit, cursor=cursor)
    return AdminOrderPage(
        orders=[AdminOrderSummaryOut.model_validate(o, from_attributes=True) for o in page.orders],
        next_cursor=page.next_cursor,
    )


def _disputes(events: list[StripeEvent]) -> list[DisputeOut]:
    """Each dispute as its latest event tells it (the events come oldest first)."""
    latest: dict[str, DisputeOut] = {}
    for event in events:
        if not event.type.startswith("charge.dispute."):
            continue
        dispute = event.payload["data"]["object"]
        latest[str(dispute["id"])] = DisputeOut(
            dispute_id=str(dispute["id"]),
            amount_cents=int(dispute.get("amount", 0)),
            reason=dispute.get("reason"),
            status=dispute.get("status"),
            event_id=event.id,
            received_at=event.received_at,
        )
    return list(latest.values())


async def admin_order_out(db: AsyncSession, order_id: uuid.UUID) -> AdminOrderOut:
    """An order as the console shows it (the API's answer and the order's page): with its
    Stripe ids, the events about them, its disputes and what can still be refunded."""
    detail = await orders.get_order(db, user_id=None, order_id=order_id)
    order = detail.order
    stripe_ids = [
        object_id
        for object_id in (order.checkout_session_id, order.payment_intent_id, order.charge_id)
        if object_id is not None
    ]
    events = await inbox.events_about(db, stripe_ids)
    return AdminOrderOut(
        **summary_fields(order),
        user_id=order.user_id,
        needs_review=order.needs_review,
        review_reason=order.review_reason,
        checkout_session_id=order.checkout_session_id,
        payment_intent_id=order.payment_intent_id,
        charge_id=order.charge_id,
        refundable_cents=await refunds.refundable_cents(db, order),
        lines=[OrderLineOut.model_validate(line) for line in detail.lines],
        history=[StatusChangeOut.model_validate(change) for change in detail.history],
        refunds=[RefundOut.model_validate(refund) for refund in detail.refunds],
        disputes=_disputes(events),
        events=[EventSummaryOut.model_validate(event) for event in events],
    )


@router.get("/admin/orders/{order_id}", response_model=AdminOrderOut, tags=["admin"])
async def get_any_order(order_id: uuid.UUID, staff: CurrentStaff, db: SessionDep) -> AdminOrderOut:
    """Any customer's order with its lines, history, Stripe ids, refunds, disputes and the
    Stripe events about it. Admins and support."""
    return await admin_order_out(db, order_id)


EventTypeQuery = Annotated[
    str | None,
    Query(max_length=100, pattern=PLAIN_TEXT, description="Exactly this type: charge.refunded, …"),
]
EventIdPath = Annotated[str, Path(max_length=255, pattern=PLAIN_TEXT)]


@router.get("/admin/events", response_model=EventPage, tags=["admin"])
async def list_events(
    staff: CurrentStaff,
    db: ReportConnectionDep,
    status: EventStatus | None = None,
    type: EventTypeQuery = None,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> EventPage:
    """The Stripe inbox, newest received first, of one status and one type if given. Admins
    and support."""
    page = await inbox.event_page(db, status=status, event_type=type, limit=limit, cursor=cursor)
    return EventPage(
        events=[EventSummaryOut.model_validate(e) for e in page.events],
        next_cursor=page.next_cursor,
    )


@router.get("/admin/events/{event_id}", response_model=EventOut, tags=["admin"])
async def get_event(event_id: EventIdPath, staff: CurrentStaff, db: SessionDep) -> EventOut:
    """A stored Stripe event: its payload, how its processing ended, its attempts and last
    error. Admins and support."""
    return EventOut.model_validate(await inbox.get_event(db, event_id))


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
