"""Where Stripe sends the customer back: the success page (which fulfils the order if Stripe says
it is paid, through the one fulfilment function) with its live status, and the canceled page."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from computebill.auth.browser import CustomerDep, VisitorDep
from computebill.cart import service as cart
from computebill.deps import CatalogDep, ClockDep, GatewayDep, SessionDep
from computebill.orders import service as orders
from computebill.orders.models import Order, OrderStatus
from computebill.payments import service
from computebill.web.csrf import verify_csrf
from computebill.web.rendering import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

SessionIdQuery = Annotated[str, Query(min_length=1, max_length=255)]

# What the customer is told for each state of the order: (headline, explanation, tone).
STATUS_TEXT: dict[OrderStatus, tuple[str, str, str]] = {
    OrderStatus.PENDING: (
        "Confirming payment…",
        "Your payment is being confirmed with the bank. This page updates by itself; you can "
        "also leave it, and we will e-mail you once it is through.",
        "pending",
    ),
    OrderStatus.PAID: (
        "Payment received",
        "Thank you! Your instances are being prepared and will appear on your dashboard.",
        "good",
    ),
    OrderStatus.PARTIALLY_REFUNDED: (
        "Partially refunded",
        "This order was paid and part of it has since been refunded.",
        "neutral",
    ),
    OrderStatus.REFUNDED: (
        "Refunded",
        "This order was paid and has since been refunded.",
        "neutral",
    ),
    OrderStatus.DISPUTED: ("Payment disputed", "The payment for this order is disputed.", "bad"),
    OrderStatus.PAYMENT_FAILED: (
        "Payment failed",
        "The payment did not go through, so nothing was charged. Your cart is unchanged.",
        "bad",
    ),
    OrderStatus.EXPIRED: (
        "Checkout expired",
        "The checkout closed before it was paid, so nothing was charged. Your cart is unchanged.",
        "bad",
    ),
    OrderStatus.CANCELED: (
        "Checkout canceled",
        "Nothing was charged. Your cart is unchanged.",
        "bad",
    ),
}


async def _confirmed(
    db: SessionDep, gateway: GatewayDep, customer: CustomerDep, clock: ClockDep, session_id: str
) -> Order:
    return await service.confirm_checkout(
        db, gateway, user_id=customer.user_id, session_id=session_id, now=clock.now()
    )


async def _status_context(
    db: SessionDep, customer: CustomerDep, catalog: CatalogDep, order: Order, session_id: str
) -> tuple[dict[str, Any], int]:
    headline, explanation, tone = STATUS_TEXT[order.status]
    # Fulfilment takes what was bought out of the cart: the header shows what is left.
    remaining = await cart.priced_cart(db, user_id=customer.user_id, catalog=catalog)
    context = {
        "order": order,
        "session_id": session_id,
        "pending": order.status is OrderStatus.PENDING,
        "headline": headline,
        "explanation": explanation,
        "tone": tone,
    }
    return context, sum(line.item.quantity for line in remaining.lines)


@router.get("/checkout/success")
async def checkout_success(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    gateway: GatewayDep,
    session_id: SessionIdQuery,
) -> Response:
    """Stripe's success_url. Only the order's owner sees it; anyone else gets a 404."""
    order = await _confirmed(db, gateway, customer, clock, session_id)
    detail = await orders.get_order(db, user_id=customer.user_id, order_id=order.id)
    context, count = await _status_context(db, customer, catalog, order, session_id)
    return render(
        request,
        "checkout_success.html",
        {**context, "lines": detail.lines},
        visitor=dataclasses.replace(customer.visitor, cart_count=count),
    )


@router.get("/checkout/success/status")
async def checkout_status(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    gateway: GatewayDep,
    session_id: SessionIdQuery,
) -> Response:
    """The status box alone, polled by htmx every 2 s until the order is no longer pending."""
    order = await _confirmed(db, gateway, customer, clock, session_id)
    context, count = await _status_context(db, customer, catalog, order, session_id)
    return render(
        request,
        "_checkout_status.html",
        {**context, "oob_count": not context["pending"]},
        visitor=dataclasses.replace(customer.visitor, cart_count=count),
    )


@router.get("/checkout/canceled")
async def checkout_canceled(request: Request, visitor: VisitorDep) -> Response:
    """Stripe's cancel_url: nothing was charged and the cart was never touched."""
    return render(request, "checkout_canceled.html", {}, visitor=visitor)
