"""Checkout and the caller's orders; an admin's refund (DESIGN §8)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse

from computebill.auth.dependencies import CurrentAdmin, CurrentPrincipal
from computebill.deps import CatalogDep, ClockDep, GatewayDep, SessionDep, SettingsDep
from computebill.errors import AppError, problem_response
from computebill.instances.models import Instance
from computebill.instances.schemas import instance_out
from computebill.instances.service import list_instances, usage
from computebill.orders import service
from computebill.orders.schemas import (
    CheckoutOut,
    OrderLineOut,
    OrderOut,
    OrderPage,
    OrderSummaryOut,
    RefundIn,
    RefundOut,
    RefundRequestedOut,
    StatusChangeOut,
)
from computebill.payments import service as payments
from computebill.payments.gateway import (
    PaymentProviderUnavailable,
    PaymentsNotConfigured,
)

router = APIRouter(prefix="/api/v1", tags=["orders"])

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=255, pattern=r"^[\x21-\x7e]+$"),
]


class PaymentProviderDown(AppError):
    status = 502
    code = "payment_provider_unavailable"

    def __init__(self) -> None:
        super().__init__("The payment provider could not be reached; try again in a moment.")


@router.post("/checkout", status_code=status.HTTP_201_CREATED, response_model=CheckoutOut)
async def checkout(
    request: Request,
    principal: CurrentPrincipal,
    db: SessionDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    gateway: GatewayDep,
    idempotency_key: IdempotencyKey = None,
) -> CheckoutOut | JSONResponse:
    """Turn the cart into an order and a Stripe Checkout Session; answer where to pay."""
    try:
        order = await payments.start_checkout(
            db,
            gateway,
            user_id=principal.user_id,
            catalog=catalog,
            idempotency_key=idempotency_key,
            public_base_url=str(settings.public_base_url),
            now=clock.now(),
        )
    except PaymentsNotConfigured:
        return problem_response(
            status=503, code="payments_unavailable", detail="Payments are not configured."
        )
    except PaymentProviderUnavailable:
        # Answered, not raised, so the note on the order is committed.
        return problem_response(
            status=502,
            code="payment_provider_unavailable",
            detail="The payment provider could not be reached; try again in a moment.",
            headers={"Retry-After": "5"},
        )
    assert order.checkout_url is not None
    return CheckoutOut(order_id=order.id, checkout_url=order.checkout_url)


@router.get("/orders", response_model=OrderPage)
async def list_orders(
    principal: CurrentPrincipal,
    db: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderPage:
    page = await service.order_page(db, user_id=principal.user_id, limit=limit, cursor=cursor)
    return OrderPage(
        orders=[OrderSummaryOut.model_validate(o) for o in page.orders],
        next_cursor=page.next_cursor,
    )


def _order_out(
    detail: service.OrderDetail, instances: list[Instance], *, now: datetime
) -> OrderOut:
    summary = OrderSummaryOut.model_validate(detail.order).model_dump()
    return OrderOut(
        **summary,
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
    order_id: uuid.UUID, principal: CurrentPrincipal, db: SessionDep, clock: ClockDep
) -> OrderOut:
    detail = await service.get_order(db, user_id=principal.user_id, order_id=order_id)
    instances = await list_instances(db, user_id=principal.user_id, order_id=order_id)
    return _order_out(detail, instances, now=clock.now())


@router.post(
    "/admin/orders/{order_id}/refund",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RefundRequestedOut,
)
async def refund_order(
    request: Request,
    order_id: uuid.UUID,
    body: RefundIn,
    admin: CurrentAdmin,
    db: SessionDep,
    gateway: GatewayDep,
    idempotency_key: IdempotencyKey = None,
) -> RefundRequestedOut:
    """Refund all or part of an order; its state follows when Stripe's webhook arrives."""
    try:
        refund_id, amount = await payments.request_refund(
            db,
            gateway,
            order_id=order_id,
            amount_cents=body.amount_cents,
            idempotency_key=idempotency_key,
        )
    except PaymentProviderUnavailable as error:
        raise PaymentProviderDown() from error
    return RefundRequestedOut(refund_id=refund_id, amount_cents=amount)
