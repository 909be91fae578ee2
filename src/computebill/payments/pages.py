"""The customer's side of payments: checking out from the cart page, buying credit from the
billing page (its top-up form), where Stripe sends the customer back (the success page, which
fulfils the order or the top-up if Stripe says it is paid, with its live status, and the
canceled page), and the order history and order pages. The operator's side: the console's
orders (with refunds) and Stripe inbox (with replays). The same services as the JSON API."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.audit import service as audit
from computebill.auth.browser import (
    AdminCustomer,
    AdminWithRecentLogin,
    Customer,
    CustomerDep,
    RecentLoginDep,
    StaffCustomer,
    VisitorDep,
    verify_csrf,
)
from computebill.auth.dependencies import ClientDep
from computebill.cart import service as cart
from computebill.cart.pages import cart_response
from computebill.catalog.service import Catalog
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
from computebill.instances.service import check_extendable, get_instance, list_instances
from computebill.money import cents_from_text, format_money
from computebill.orders import service as orders
from computebill.orders.models import Order, OrderStatus
from computebill.paging import PageCursor
from computebill.payments import cards, inbox, recharge, refunds
from computebill.payments import checkout as checkouts
from computebill.payments.api import (
    EventIdPath,
    admin_order_out,
    card_setup_url,
    open_extension,
    open_top_up,
)
from computebill.payments.checkout import Paid, TopUpAmountOutOfRange
from computebill.payments.models import EventStatus
from computebill.payments.schemas import PLAIN_TEXT
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


# A paid extension's order made no new machine: its hours went to one that runs.
EXTENDED_TEXT = "Thank you! Your machine's new stop time shows on your dashboard."


async def _status_context(
    db: SessionDep, customer: CustomerDep, catalog: CatalogDep, order: Order, session_id: str
) -> tuple[dict[str, Any], int]:
    headline, explanation, tone = STATUS_TEXT[order.status]
    if order.status is OrderStatus.PAID and await orders.extends_an_instance(db, order.id):
        explanation = EXTENDED_TEXT
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


# Extending a fixed-hours instance (docs/architecture.md §9) -----------------------------------


def extend_path(instance_id: uuid.UUID | str) -> str:
    return f"/dashboard/instances/{instance_id}/extend"


async def _extension_page(
    request: Request,
    customer: Customer,
    db: AsyncSession,
    catalog: Catalog,
    *,
    instance_id: str,
    hours: int,
    error: AppError | None = None,
) -> Response:
    """The instance, its stop time, and what `hours` more cost now (the one pricing function);
    why it cannot be extended instead, when it cannot; `error` a refused payment's reason."""
    try:
        found = uuid.UUID(instance_id)
    except ValueError as bad:
        raise NotFound("No such instance.") from bad
    instance, _ = await get_instance(db, user_id=customer.user_id, instance_id=found)
    not_extendable, hours_error, quote = None, None, None
    try:
        check_extendable(instance)
    except AppError as refused:
        not_extendable = refused.detail
    else:
        try:
            quote = checkouts.quote_extension(catalog, instance, hours=hours)
        except AppError as refused:
            hours_error = refused.detail
    context = {
        "instance": instance,
        "hours": hours,
        "quote": quote,
        "not_extendable": not_extendable,
        "hours_error": hours_error,
        "error": None if error is None else error.detail,
        "policy": catalog.policy,
        "extend_path": extend_path(instance.id),
    }
    status_code = 200 if error is None else error.status
    return render(
        request, "extend_instance.html", context, visitor=customer.visitor, status_code=status_code
    )


@router.get(extend_path("{instance_id}"))
async def extension_quote(
    request: Request,
    instance_id: str,
    customer: CustomerDep,
    db: SessionDep,
    catalog: CatalogDep,
    hours: Annotated[int, Query(ge=0, le=1_000_000)] = 1,
) -> Response:
    """Extend a fixed-hours instance: `hours` more, priced by the server before anything is
    paid, then paid by card or from the credit balance. Anyone else's instance is a 404."""
    return await _extension_page(
        request, customer, db, catalog, instance_id=instance_id, hours=hours
    )


@router.post(extend_path("{instance_id}"))
async def extend_instance(
    request: Request,
    instance_id: str,
    customer: CustomerDep,
    db: SessionDep,
    publisher: PublisherDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    gateway: GatewayDep,
    hours: Annotated[int, Form(ge=0, le=1_000_000)],
    pay_with: Annotated[checkouts.PayWith, Form()],
) -> Response:
    """As `POST /api/v1/instances/{id}/extensions`: from credit, extended at once and back to
    the dashboard; by card, on to Stripe's page. A refusal comes back on the page, with its
    status (402 for too little credit)."""
    now = clock.now()
    try:
        found = uuid.UUID(instance_id)
    except ValueError as bad:
        raise NotFound("No such instance.") from bad
    try:
        order, _ = await open_extension(
            db,
            publisher,
            gateway,
            settings,
            catalog,
            user_id=customer.user_id,
            instance_id=found,
            hours=hours,
            pay_with=pay_with,
            idempotency_key=None,
            now=now,
        )
    except NotFound:
        raise
    except AppError as refused:
        # Nothing of a refused extension is kept, but a note that Stripe was away.
        await (db.commit() if refused.keeps_writes else db.rollback())
        return await _extension_page(
            request, customer, db, catalog, instance_id=instance_id, hours=hours, error=refused
        )
    if pay_with is checkouts.PayWith.CARD:
        assert order.checkout_url is not None
        return redirect(order.checkout_url, request)
    return redirect(f"/dashboard#instance-{found}", request)


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


# The console: every customer's orders, refunds, and the Stripe inbox ----------------------------

CONSOLE_PAGE_SIZE = 25
FilterText = Annotated[str, Query(max_length=100, pattern=PLAIN_TEXT)]

# Where Stripe's dashboard shows an object, by its id's prefix. Checkout Sessions and refunds
# have no page of their own there: their ids are shown plain.
DASHBOARD_SECTIONS = {"pi": "payments", "ch": "payments", "py": "payments", "evt": "events"}


def stripe_dashboard_url(settings: Settings, object_id: str) -> str | None:
    """The object's page in Stripe's dashboard (its test side with a test key), or None. With
    the Stripe emulator as the API there is none: the emulator has no page per object, and its
    JSON is read only with the secret key."""
    section = DASHBOARD_SECTIONS.get(object_id.partition("_")[0])
    if settings.stripe_api_base is not None or section is None:
        return None
    key = settings.stripe_secret_key
    live = key is not None and key.get_secret_value().startswith(("sk_live_", "rk_live_"))
    return f"https://dashboard.stripe.com/{'' if live else 'test/'}{section}/{object_id}"


def _console_order_filter(
    status: str, review: str, since: str, until: str, customer: str
) -> orders.OrderFilter:
    """The order list's form, as typed: empty fields match anything."""
    try:
        return orders.order_filter(
            status=OrderStatus(status) if status else None,
            needs_review=True if review else None,
            since=date.fromisoformat(since) if since else None,
            until=date.fromisoformat(until) if until else None,
            user_id=uuid.UUID(customer) if customer else None,
        )
    except ValueError as error:
        raise orders.BadOrderFilter(
            "Pick a status from the list, days as YYYY-MM-DD and a customer id as a UUID."
        ) from error


@router.get("/admin/orders")
async def console_orders(
    request: Request,
    staff: StaffCustomer,
    db: SessionDep,
    status: FilterText = "",
    review: FilterText = "",
    since: FilterText = "",
    until: FilterText = "",
    customer: FilterText = "",
    cursor: PageCursor = None,
) -> Response:
    """Every customer's orders, newest first, filtered; a bad filter is shown on the form."""
    query = {"status": status, "review": review, "since": since, "until": until}
    query["customer"] = customer

    async def read() -> tuple[Sequence[object], str | None]:
        filters = _console_order_filter(status, review, since, until, customer)
        page = await orders.filtered_order_page(
            await db.connection(), filters, limit=CONSOLE_PAGE_SIZE, cursor=cursor
        )
        return page.orders, page.next_cursor

    context = {"query": query, "statuses": list(OrderStatus)}
    return await _console_list(request, staff, "admin_orders.html", context, read)


async def _console_list(
    request: Request,
    staff: Customer,
    template: str,
    context: dict[str, Any],
    read: Callable[[], Awaitable[tuple[Sequence[object], str | None]]],
) -> Response:
    """A console list page: a page of `rows` and the pager, or the filter's refusal shown on
    the form, with its status."""
    try:
        rows, next_cursor = await read()
    except AppError as refused:
        context |= {"rows": [], "next_cursor": None, "error": refused.detail}
        return render(request, template, context, visitor=staff.visitor, status_code=refused.status)
    context |= {"rows": rows, "next_cursor": next_cursor, "error": None}
    return render(request, template, context, visitor=staff.visitor)


def _order_id(order_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(order_id)
    except ValueError as error:
        raise NotFound("No such order.") from error


async def _console_order_page(
    request: Request,
    db: AsyncSession,
    settings: Settings,
    viewer: Customer,
    order_id: uuid.UUID,
    *,
    recent_login: bool,
    refund_form: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """The console's order page; a refused refund form comes back on it with its error."""
    context = {
        "order": await admin_order_out(db, order_id),
        "stripe_url": lambda object_id: stripe_dashboard_url(settings, object_id),
        "recent_login": recent_login,
        "refund_form": refund_form or {"amount": "", "reason": ""},
        "error": error,
        "refund_requested": request.query_params.get("refund"),
    }
    return render(
        request, "admin_order.html", context, visitor=viewer.visitor, status_code=status_code
    )


@router.get("/admin/orders/{order_id}")
async def console_order(
    request: Request,
    order_id: str,
    staff: StaffCustomer,
    db: SessionDep,
    settings: SettingsDep,
    recent_login: RecentLoginDep,
) -> Response:
    """An order with its lines, history, Stripe ids, refunds, disputes and events; for admins,
    the refund form."""
    return await _console_order_page(
        request, db, settings, staff, _order_id(order_id), recent_login=recent_login
    )


RefundReason = Annotated[str, Form(max_length=500, pattern=PLAIN_TEXT)]


@router.post("/admin/orders/{order_id}/refund")
async def review_refund(
    request: Request,
    order_id: str,
    admin: AdminCustomer,
    db: SessionDep,
    settings: SettingsDep,
    recent_login: RecentLoginDep,
    amount: Annotated[str, Form(max_length=40)] = "",
    reason: RefundReason = "",
) -> Response:
    """The refund form's first step: the amount checked against what can still be refunded,
    then a page that says what will happen and asks to confirm. Nothing is refunded yet."""
    wanted = _order_id(order_id)
    order = await db.get(Order, wanted)
    if order is None:
        raise NotFound("No such order.")
    refundable = await refunds.refundable_cents(db, order)
    amount_cents = cents_from_text(amount) if amount.strip() else refundable
    problem = None
    if refundable <= 0:
        problem = f"An order that is {order.status.value} has nothing left to refund."
    elif amount_cents is None or amount_cents <= 0:
        problem = "Enter an amount in dollars and cents, like 12.50, or leave it empty."
    elif amount_cents > refundable:
        problem = f"At most {format_money(refundable, order.currency)} can still be refunded."
    if problem is not None or amount_cents is None:
        return await _console_order_page(
            request,
            db,
            settings,
            admin,
            wanted,
            recent_login=recent_login,
            refund_form={"amount": amount, "reason": reason},
            error=problem,
            status_code=409 if refundable <= 0 else 422,
        )
    context = {
        "order": order,
        "amount_cents": amount_cents,
        "reason": reason,
        "paid_with": await refunds.paid_with(db, order.id),
        "recent_login": recent_login,
        # One refund however often the confirmation is sent (Stripe's idempotency key).
        "idempotency_key": uuid.uuid4().hex,
    }
    return render(request, "admin_order_refund.html", context, visitor=admin.visitor)


@router.post("/admin/orders/{order_id}/refund/confirm")
async def confirm_refund(
    request: Request,
    order_id: str,
    admin: AdminWithRecentLogin,
    db: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    clock: ClockDep,
    client: ClientDep,
    amount_cents: Annotated[int, Form(ge=1)],
    idempotency_key: Annotated[str, Form(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")],
    reason: RefundReason = "",
) -> Response:
    """The refund, confirmed: the same service as the API's (asked of Stripe, audited)."""
    wanted = _order_id(order_id)
    try:
        refund_id, _ = await refunds.refund_audited(
            db,
            gateway,
            order_id=wanted,
            amount_cents=amount_cents,
            reason=reason or None,
            idempotency_key=idempotency_key,
            actor=await audit.signed_in_actor(db, admin.user_id, client),
            now=clock.now(),
        )
    except NotFound:
        raise
    except AppError as refused:  # not refundable (any more), Stripe away: shown on the order
        return await _console_order_page(
            request,
            db,
            settings,
            admin,
            wanted,
            recent_login=True,
            error=refused.detail,
            status_code=refused.status,
        )
    return redirect(f"/admin/orders/{wanted}?{urlencode({'refund': refund_id})}", request)


@router.get("/admin/events")
async def console_events(
    request: Request,
    staff: StaffCustomer,
    db: SessionDep,
    status: FilterText = "",
    type: FilterText = "",
    cursor: PageCursor = None,
) -> Response:
    """The Stripe inbox, newest received first, of one status and one type if chosen."""

    async def read() -> tuple[Sequence[object], str | None]:
        try:
            wanted = EventStatus(status) if status else None
        except ValueError as error:
            raise inbox.BadEventFilter("Pick a status from the list.") from error
        page = await inbox.event_page(
            await db.connection(),
            status=wanted,
            event_type=type or None,
            limit=CONSOLE_PAGE_SIZE,
            cursor=cursor,
        )
        return page.events, page.next_cursor

    context = {"query": {"status": status, "type": type}, "statuses": list(EventStatus)}
    return await _console_list(request, staff, "admin_events.html", context, read)


@router.get("/admin/events/{event_id}")
async def console_event(
    request: Request,
    event_id: EventIdPath,
    staff: StaffCustomer,
    db: SessionDep,
    settings: SettingsDep,
    recent_login: RecentLoginDep,
) -> Response:
    """A stored event: its payload pretty-printed, how it ended, and for admins a replay."""
    event = await inbox.get_event(db, event_id)
    context = {
        "event": event,
        "payload": json.dumps(event.payload, indent=2, ensure_ascii=False),
        "dashboard_url": stripe_dashboard_url(settings, event.id),
        "recent_login": recent_login,
        "replayed": request.query_params.get("replayed") == "1",
    }
    return render(request, "admin_event.html", context, visitor=staff.visitor)


@router.post("/admin/events/{event_id}/replay")
async def replay_console_event(
    request: Request,
    event_id: EventIdPath,
    admin: AdminWithRecentLogin,
    db: SessionDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    """Process the event again: the same service as the API's replay (queued, audited)."""
    await inbox.replay_event_audited(
        db,
        event_id,
        actor=await audit.signed_in_actor(db, admin.user_id, client),
        now=clock.now(),
    )
    return redirect(f"/admin/events/{quote(event_id, safe='')}?replayed=1", request)
