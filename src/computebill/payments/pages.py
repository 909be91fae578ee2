"""The customer's side of payments: checking out from the cart page, buying credit from the
billing page (its top-up form), where Stripe sends the customer back (the success page, which
fulfils the order or the top-up if Stripe says it is paid, with its live status, and the
canceled page), and the order history and order pages. The same services as the JSON API."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from computebill.auth.browser import CustomerDep, VisitorDep, verify_csrf
from computebill.cart import service as cart
from computebill.cart.pages import cart_response
from computebill.config import Settings
from computebill.credits.models import CreditTopUp, TopUpStatus
from computebill.db import commit
from computebill.deps import (
    CatalogDep,
    ClockDep,
    GatewayDep,
    PublisherDep,
    RedisDep,
    SessionDep,
    SettingsDep,
)
from computebill.errors import AppError, NotFound
from computebill.instances.service import list_instances
from computebill.money import cents_from_text, format_money
from computebill.orders import service as orders
from computebill.orders.models import Order, OrderStatus
from computebill.paging import PageCursor
from computebill.payments import cards, recharge
from computebill.payments import checkout as checkouts
from computebill.payments.api import card_setup_url, open_top_up
from computebill.payments.checkout import Paid, TopUpAmountOutOfRange
from computebill.payments.terms import PaymentTerms
from computebill.web.rendering import redirect, render, render_refused_form

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


@router.post("/checkout")
async def checkout(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    publisher: PublisherDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    gateway: GatewayDep,
) -> Response:
    """The cart becomes an order, and the customer goes to Stripe's page to pay it. A refusal
    (an empty cart, a line that can no longer be bought, Stripe away) is shown on the cart."""
    now = clock.now()
    try:
        prepared = await checkouts.prepare_checkout(
            db, user_id=customer.user_id, catalog=catalog, idempotency_key=None, now=now
        )
        await commit(db, publisher)  # the order outlives Stripe being away: a retry finds it
        order = await checkouts.open_checkout(
            db, gateway, prepared.order, public_base_url=str(settings.public_base_url), now=now
        )
    except AppError as refused:
        return await cart_response(
            request,
            db,
            catalog,
            user_id=customer.user_id,
            visitor=customer.visitor,
            error=refused.detail,
            status_code=refused.status,
        )
    assert order.checkout_url is not None
    return redirect(order.checkout_url, request)


def _confirming(paid: type[Paid]) -> Callable[..., Awaitable[Paid]]:
    """The dependency that confirms the customer's checkout named by `session_id`: an order's
    or a top-up's (checkout.confirm_checkout)."""

    async def confirmed(
        db: SessionDep,
        gateway: GatewayDep,
        redis: RedisDep,
        settings: SettingsDep,
        customer: CustomerDep,
        clock: ClockDep,
        session_id: SessionIdQuery,
    ) -> Paid:
        return await checkouts.confirm_checkout(
            db,
            gateway,
            redis,
            paid,
            namespace=settings.redis_namespace,
            user_id=customer.user_id,
            session_id=session_id,
            terms=PaymentTerms.of(settings),
            now=clock.now(),
        )

    return confirmed


ConfirmedOrder = Annotated[Order, Depends(_confirming(Order))]
ConfirmedTopUp = Annotated[CreditTopUp, Depends(_confirming(CreditTopUp))]


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
    order: ConfirmedOrder,
    session_id: SessionIdQuery,
) -> Response:
    """Stripe's success_url. Only the order's owner sees it; anyone else gets a 404."""
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
    order: ConfirmedOrder,
    session_id: SessionIdQuery,
) -> Response:
    """The status box alone, polled by htmx every 2 s until the order is no longer pending: the
    stored state, with Stripe asked at most every 10 s (checkout.CONFIRM_INTERVAL)."""
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


# Top-ups: buying credit, and where Stripe sends the customer back ------------------------------

TOP_UP_CHOICES_CENTS = (2_500, 10_000, 50_000)  # the billing page's one-click amounts


def top_up_form(
    settings: Settings, *, amount: str = "", error: str | None = None
) -> dict[str, Any]:
    """The context of the top-up form (`_top_up_form.html`), which the billing page shows."""
    return {
        "top_up_choices": TOP_UP_CHOICES_CENTS,
        "top_up_min_cents": settings.top_up_min_cents,
        "top_up_max_cents": settings.top_up_max_cents,
        "top_up_amount": amount,
        "top_up_error": error,
    }


@router.post("/billing/top-ups")
async def top_up_from_billing(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    publisher: PublisherDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    gateway: GatewayDep,
    amount: Annotated[str, Form(max_length=40)] = "",
    save_card: Annotated[bool, Form()] = False,
) -> Response:
    """The billing page's top-up: as `POST /api/v1/credits/top-ups` (the top-up committed, then
    its Checkout Session opened), then on to Stripe's page. A refusal (an amount out of range,
    Stripe away) is shown with the form: for htmx the form alone, else a page around it."""
    cents = cents_from_text(amount)
    try:
        if cents is None:
            raise TopUpAmountOutOfRange("Enter an amount in dollars, such as 40 or 12.50.")
        top_up = await open_top_up(
            db,
            publisher,
            gateway,
            settings,
            user_id=customer.user_id,
            amount_cents=cents,
            currency=catalog.policy.currency,
            idempotency_key=None,
            now=clock.now(),
            save_card=save_card,
        )
    except AppError as refused:
        error = refused.detail
        if isinstance(refused, TopUpAmountOutOfRange) and cents is not None:
            low, high = settings.top_up_min_cents, settings.top_up_max_cents
            error = f"A top-up is between {format_money(low)} and {format_money(high)}."
        context = top_up_form(settings, amount=amount, error=error)
        return render_refused_form(
            request,
            context,
            fragment="_top_up_form.html",
            page="top_up_refused.html",
            visitor=customer.visitor,
            status_code=refused.status,
        )
    assert top_up.checkout_url is not None
    return redirect(top_up.checkout_url, request)


# Saved cards and auto-recharge on the billing page (docs/architecture.md §4, auto-recharge) ----


class DollarsNotUnderstood(AppError):
    status = 422
    code = "amount_not_understood"


def _cents_of(text: str, what: str) -> int:
    cents = cents_from_text(text)
    if cents is None:
        raise DollarsNotUnderstood(f"Enter the {what} in dollars, such as 40 or 12.50.")
    return cents


@router.post("/billing/payment-methods/setup")
async def add_card_from_billing(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    gateway: GatewayDep,
) -> Response:
    """The billing page's "Add a card": on to Stripe's page in setup mode."""
    url = await card_setup_url(
        db,
        gateway,
        settings,
        user_id=customer.user_id,
        currency=catalog.policy.currency,
        now=clock.now(),
    )
    return redirect(url, request)


@router.post("/billing/payment-methods/{card_id}/remove")
async def remove_card_from_billing(
    request: Request, card_id: uuid.UUID, customer: CustomerDep, db: SessionDep, gateway: GatewayDep
) -> Response:
    """ "Remove": the card is detached at Stripe and forgotten."""
    await cards.remove_card(db, gateway, user_id=customer.user_id, card_id=card_id)
    return redirect("/billing#cards", request)


@router.post("/billing/auto-recharge")
async def auto_recharge_from_billing(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    settings: SettingsDep,
    threshold: Annotated[str, Form(max_length=40)],
    amount: Annotated[str, Form(max_length=40)],
    enabled: Annotated[bool, Form()] = False,
    monthly_max: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """The auto-recharge form: as `PUT /api/v1/credits/auto-recharge`, amounts in dollars. A
    refusal is an error page saying why."""
    await recharge.set_rule(
        db,
        customer.user_id,
        enabled=enabled,
        threshold_cents=_cents_of(threshold, "threshold"),
        amount_cents=_cents_of(amount, "amount"),
        monthly_max_cents=_cents_of(monthly_max, "monthly maximum")
        if monthly_max.strip()
        else None,
        minimum_cents=settings.top_up_min_cents,
        maximum_cents=settings.top_up_max_cents,
    )
    return redirect("/billing#auto-recharge", request)


# What the customer is told for each state of a top-up: (headline, explanation, tone); the
# headline of a paid one names the amount.
TOP_UP_TEXT: dict[TopUpStatus, tuple[str, str, str]] = {
    TopUpStatus.PENDING: (
        "Confirming payment…",
        "Your payment is being confirmed. This page updates by itself; the credit is added as "
        "soon as the payment is through.",
        "pending",
    ),
    TopUpStatus.PAID: ("Credit added: {amount}", "It is in your balance now.", "good"),
    TopUpStatus.PARTIALLY_REFUNDED: (
        "Partially refunded",
        "This top-up was paid and part of it has since been refunded and taken back from your "
        "balance.",
        "neutral",
    ),
    TopUpStatus.REFUNDED: (
        "Refunded",
        "This top-up was paid and has since been refunded and taken back from your balance.",
        "neutral",
    ),
    TopUpStatus.DISPUTED: (
        "Payment disputed",
        "The payment for this top-up is disputed, so its credit was taken back.",
        "bad",
    ),
    TopUpStatus.PAYMENT_FAILED: (
        "Payment failed",
        "The payment did not go through, so nothing was charged or credited.",
        "bad",
    ),
    TopUpStatus.EXPIRED: (
        "Checkout expired",
        "The checkout closed before it was paid, so nothing was charged or credited.",
        "bad",
    ),
}


def _top_up_context(top_up: CreditTopUp, session_id: str) -> dict[str, Any]:
    headline, explanation, tone = TOP_UP_TEXT[top_up.status]
    return {
        "top_up": top_up,
        "session_id": session_id,
        "pending": top_up.status is TopUpStatus.PENDING,
        "headline": headline.format(amount=format_money(top_up.amount_cents, top_up.currency)),
        "explanation": explanation,
        "tone": tone,
    }


@router.get("/credits/top-ups/success")
async def top_up_success(
    request: Request, customer: CustomerDep, top_up: ConfirmedTopUp, session_id: SessionIdQuery
) -> Response:
    """Stripe's success_url for a top-up. Only its owner sees it; anyone else gets a 404."""
    context = _top_up_context(top_up, session_id)
    return render(request, "top_up_success.html", context, visitor=customer.visitor)


@router.get("/credits/top-ups/success/status")
async def top_up_status(
    request: Request, customer: CustomerDep, top_up: ConfirmedTopUp, session_id: SessionIdQuery
) -> Response:
    """The status box alone, polled by htmx every 2 s while the top-up is pending: the stored
    state, with Stripe asked at most every 10 s (checkout.CONFIRM_INTERVAL)."""
    context = _top_up_context(top_up, session_id)
    return render(request, "_top_up_status.html", context, visitor=customer.visitor)


@router.get("/credits/top-ups/canceled")
async def top_up_canceled(request: Request, visitor: VisitorDep) -> Response:
    """Stripe's cancel_url for a top-up: nothing was charged or credited."""
    return render(request, "checkout_canceled.html", {"top_up": True}, visitor=visitor)


PAGE_SIZE = 20  # orders on one page of the history


@router.get("/account/orders")
async def order_history(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    cursor: PageCursor = None,
) -> Response:
    """The user's orders, newest first, a page at a time (the API's cursor)."""
    page = await orders.order_page(
        await db.connection(), user_id=customer.user_id, limit=PAGE_SIZE, cursor=cursor
    )
    context = {"orders": page.orders, "next_cursor": page.next_cursor, "first_page": not cursor}
    return render(request, "account_orders.html", context, visitor=customer.visitor)


@router.get("/account/orders/{order_id}")
async def order_detail(
    request: Request, order_id: str, customer: CustomerDep, db: SessionDep, clock: ClockDep
) -> Response:
    """One of the user's orders: lines, status history, payment, refunds and its receipt."""
    try:
        wanted = uuid.UUID(order_id)
    except ValueError as error:
        raise NotFound("No such order.") from error
    detail = await orders.get_order(db, user_id=customer.user_id, order_id=wanted)
    order = detail.order
    context = {
        "order": order,
        "lines": detail.lines,
        "history": detail.history,
        "refunds": detail.refunds,
        "instances": await list_instances(
            await db.connection(), user_id=customer.user_id, order_id=order.id
        ),
        # The receipt the e-mail carries, once the order is paid.
        "receipt": await orders.receipt(db, order.id) if order.paid_at is not None else None,
        "pay_url": orders.open_checkout_url(order, now=clock.now()),
    }
    return render(request, "account_order.html", context, visitor=customer.visitor)
