"""Checkout: the cart becomes an order, the order gets a Stripe Checkout Session, and the success
page confirms it (docs/architecture.md §5.4, §5.5). A credit top-up is bought the same way, with
a session of its own (§4, top-ups).

Checkout is two transactions, both owned by the caller: `prepare_checkout` writes the order and
is committed before Stripe is asked, so a retry finds it (and its key) whatever happens next;
`open_checkout` then asks Stripe with no lock held, and records the session, or the error."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

import redis.asyncio as aioredis
import redis.exceptions
import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.auth.service import require_verified_email
from computebill.cart.models import CartItem
from computebill.cart.service import lock_cart
from computebill.catalog.service import Catalog, chosen_image, price_valid, validate_configuration
from computebill.credits import service as credits
from computebill.credits.models import CreditTopUp, EntryKind, TopUpStatus
from computebill.errors import AppError, Conflict, NotFound
from computebill.instances import metering
from computebill.instances.models import Instance
from computebill.instances.service import (
    check_extendable,
    extend,
    extension_configuration,
    lock_own_instance,
)
from computebill.invoices import service as invoices
from computebill.invoices.service import Seller
from computebill.jobs import JobName, request_job
from computebill.money import MILLICENTS_PER_CENT
from computebill.orders import service as orders
from computebill.orders.models import Order, OrderLine, OrderStatus, OrderStatusChange
from computebill.payments.cards import customer_of
from computebill.payments.events import fulfill_checkout
from computebill.payments.gateway import (
    CheckoutFor,
    CheckoutLine,
    OpenedCheckout,
    PaymentProviderUnavailable,
    PaymentsNotConfigured,
    StripeGateway,
)
from computebill.payments.models import StripeCustomer
from computebill.payments.terms import PaymentTerms

log = structlog.get_logger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# The success page's status is polled every 2 s; Stripe is asked about one order at most this
# often (the webhook usually settles it first).
CONFIRM_INTERVAL = timedelta(seconds=10)


class EmptyCart(AppError):
    status = 422
    code = "empty_cart"


class CartNotPurchasable(AppError):
    status = 422
    code = "cart_not_purchasable"


class CheckoutNotOpened(PaymentProviderUnavailable):
    """Stripe could not open the order's checkout. Commit, then raise: the note on the order is
    kept for the next try and for operators."""

    keeps_writes = True


@dataclass(frozen=True, slots=True)
class PreparedCheckout:
    order: Order
    reused: bool  # an existing order answers this request: same key, or the same open checkout


def _fingerprint(items: list[CartItem]) -> str:
    shape = sorted(
        (str(i.gpu_model_id), i.gpu_count, i.vcpus, i.storage_gb, i.hours, i.region, i.quantity)
        # The image only where one is chosen: a cart from before images keeps its fingerprint.
        + ((str(i.image_id),) if i.image_id is not None else ())
        for i in items
    )
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()


# What a Checkout Session pays for: an order or a credit top-up.
Paid = TypeVar("Paid", Order, CreditTopUp)


async def _earlier_request(
    db: AsyncSession,
    model: type[Paid],
    *,
    user_id: uuid.UUID,
    idempotency_key: str,
    now: datetime,
) -> Paid | None:
    """What the user's request with this Idempotency-Key made within the last 24 h, if any."""
    return await db.scalar(
        select(model).where(
            model.user_id == user_id,
            model.idempotency_key == idempotency_key,
            model.created_at > now - IDEMPOTENCY_WINDOW,
        )
    )


async def _answering_order(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    fingerprint: str,
    idempotency_key: str | None,
    now: datetime,
) -> Order | None:
    """The order that already answers this request: the same Idempotency-Key within 24 h, or
    (without a key) an unchanged cart whose checkout is still open."""
    if idempotency_key is not None:
        earlier = await _earlier_request(
            db, Order, user_id=user_id, idempotency_key=idempotency_key, now=now
        )
        if earlier is not None and earlier.cart_fingerprint != fingerprint:
            raise Conflict("This Idempotency-Key was used for a different cart.")
        return earlier
    open_order = await db.scalar(
        select(Order)
        .where(
            Order.user_id == user_id,
            Order.status == OrderStatus.PENDING,
            Order.cart_fingerprint == fingerprint,
            Order.idempotency_key.is_(None),
        )
        .order_by(Order.created_at.desc())
        .limit(1)
    )
    if open_order is not None and (
        open_order.checkout_expires_at is None  # opening it failed; opening it again is safe
        or open_order.checkout_expires_at > now + orders.REUSE_MARGIN
    ):
        return open_order
    return None


def _order_lines(catalog: Catalog, items: list[CartItem]) -> list[OrderLine]:
    """The cart's lines priced from the catalog now; refused whole if any can no longer be
    bought, before anything is written."""
    models = {model.id: model for model in catalog.models}
    images = {image.id: image for image in catalog.images}
    lines = []
    for position, item in enumerate(items):
        model = models[item.gpu_model_id]
        chosen = images.get(item.image_id) if item.image_id is not None else None
        try:
            image = chosen_image(catalog, chosen.slug if chosen is not None else None, model)
            valid = validate_configuration(
                catalog,
                gpu=model.slug,
                gpu_count=item.gpu_count,
                vcpus=item.vcpus,
                storage_gb=item.storage_gb,
                hours=item.hours,
                region=item.region,
                quantity=item.quantity,
            )
        except AppError as error:
            raise CartNotPurchasable(
                f"The cart holds a configuration that can no longer be bought: {error.detail}",
                errors=error.errors,
            ) from error
        rates = catalog.rates_for(model)
        quoted = price_valid(catalog, valid)
        lines.append(
            OrderLine(
                position=position,
                gpu_model_id=model.id,
                gpu_slug=model.slug,
                gpu_name=model.name,
                gpu_count=item.gpu_count,
                vcpus=item.vcpus,
                storage_gb=item.storage_gb,
                hours=item.hours,
                region=item.region,
                quantity=item.quantity,
                gpu_hour_cents=rates.gpu_hour_cents,
                vcpu_hour_millicents=rates.vcpu_hour_millicents,
                storage_gb_hour_millicents=rates.storage_gb_hour_millicents,
                unit_total_cents=quoted.unit_total_cents,
                line_total_cents=quoted.line_total_cents,
                ssh_key_ids=list(item.ssh_key_ids),
                image_slug=image.slug if image is not None else None,
            )
        )
    return lines


async def prepare_checkout(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    catalog: Catalog,
    idempotency_key: str | None,
    now: datetime,
) -> PreparedCheckout:
    """The order this checkout request pays: a new one from the cart, or the one that already
    answers it. Holds the cart's lock, so no line is added while the cart is being read. Needs a
    verified e-mail address, as every way to buy does."""
    await require_verified_email(db, user_id)
    await lock_cart(db, user_id)
    items = list(
        await db.scalars(
            select(CartItem).where(CartItem.user_id == user_id).order_by(CartItem.created_at)
        )
    )
    fingerprint = _fingerprint(items)
    answering = await _answering_order(
        db, user_id=user_id, fingerprint=fingerprint, idempotency_key=idempotency_key, now=now
    )
    if answering is not None:
        return PreparedCheckout(order=answering, reused=True)
    if not items:
        raise EmptyCart("The cart is empty.")

    lines = _order_lines(catalog, items)
    order = Order(
        user_id=user_id,
        status=OrderStatus.PENDING,
        currency=catalog.policy.currency,
        total_cents=sum(line.line_total_cents for line in lines),
        refunded_cents=0,
        cart_fingerprint=fingerprint,
        idempotency_key=idempotency_key,
    )
    db.add(order)
    await db.flush()
    for line in lines:
        line.order_id = order.id
    db.add_all(lines)
    db.add(
        OrderStatusChange(
            order_id=order.id,
            from_status=None,
            to_status=OrderStatus.PENDING,
            reason="checkout started",
            changed_at=now,
        )
    )
    await db.flush()
    return PreparedCheckout(order=order, reused=False)


async def _customer_for(db: AsyncSession, gateway: StripeGateway, user_id: uuid.UUID) -> str:
    """The user's Stripe Customer, created the first time (the key makes retries safe)."""
    existing = await customer_of(db, user_id)
    if existing is not None:
        return existing
    email = await db.scalar(select(User.email).where(User.id == user_id))
    customer_id = await gateway.create_customer(user_id=str(user_id), email=str(email))
    # Concurrent first checkouts get the same Customer (the key is the user's) and race to store
    # it. With no arbiter named, the loser's conflict on either unique index is skipped: naming
    # user_id alone let a customer_id conflict through as an IntegrityError.
    await db.execute(
        insert(StripeCustomer)
        .values(user_id=user_id, customer_id=customer_id)
        .on_conflict_do_nothing()
    )
    stored = await customer_of(db, user_id)
    assert stored is not None  # inserted above, or by the request that won the race
    return stored


async def _open_session(
    db: AsyncSession,
    gateway: StripeGateway,
    paying: CheckoutFor,
    *,
    user_id: uuid.UUID,
    currency: str,
    lines: list[CheckoutLine],
    success_path: str,
    cancel_path: str,
    public_base_url: str,
    now: datetime,
    save_card: bool = False,
) -> OpenedCheckout:
    """A Checkout Session in payment mode for the user's Stripe Customer, priced by `lines`
    (which the server computed). No row lock may be held: Stripe is asked."""
    base = public_base_url.rstrip("/")
    customer_id = await _customer_for(db, gateway, user_id)
    return await gateway.open_checkout(
        paying=paying,
        customer_id=customer_id,
        currency=currency,
        lines=lines,
        success_url=f"{base}{success_path}?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{base}{cancel_path}",
        expires_at=now + orders.CHECKOUT_LIFETIME,
        save_card=save_card,
    )


async def open_checkout(
    db: AsyncSession, gateway: StripeGateway, order: Order, *, public_base_url: str, now: datetime
) -> Order:
    """The order with its Checkout Session open, priced from the order's own lines, never the
    request. Stripe is asked with no lock held; the order is locked only to record the answer.

    Raises CheckoutNotOpened (which keeps the note it writes on the order) when Stripe is away;
    the Stripe idempotency key is the order's, so trying again never opens a second session."""
    if order.checkout_url is not None:
        return order
    lines = await orders.order_lines(db, order.id)
    try:
        opened = await _open_session(
            db,
            gateway,
            CheckoutFor.order(str(order.id)),
            user_id=order.user_id,
            currency=order.currency,
            lines=[
                CheckoutLine(
                    name=line.description.product_name,
                    description=line.description.details,
                    unit_amount_cents=line.unit_total_cents,
                    quantity=line.quantity,
                )
                for line in lines
            ],
            success_path="/checkout/success",
            cancel_path=f"/checkout/canceled?order_id={order.id}",
            public_base_url=public_base_url,
            now=now,
        )
    except PaymentProviderUnavailable as error:
        noted = await orders.lock_order(db, order.id)
        assert noted is not None  # committed by the first transaction; orders are never deleted
        noted.checkout_error = f"{now.isoformat()}: {error.reason}"[:500]
        raise CheckoutNotOpened(error.reason) from error
    locked = await orders.lock_order(db, order.id)
    assert locked is not None
    # A concurrent request for the same order got the same session (the key is the order's).
    locked.checkout_session_id = opened.session_id
    locked.checkout_url = opened.url
    locked.checkout_expires_at = opened.expires_at
    locked.checkout_error = None
    await db.flush()
    return locked


async def _stripe_may_be_asked(store: aioredis.Redis, key: str) -> bool:
    """True at most once per CONFIRM_INTERVAL for `key`. Without Redis, Stripe is asked: the
    page must still confirm payments, only more often."""
    try:
        return bool(await store.set(key, 1, nx=True, ex=int(CONFIRM_INTERVAL.total_seconds())))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        log.warning("checkout_confirmation_unthrottled", error=repr(error))
        return True


# The Redis key naming when Stripe was last asked about one, by what is paid for.
_CONFIRM_THROTTLE: dict[type[Order | CreditTopUp], str] = {
    Order: "checkout-confirm",
    CreditTopUp: "top-up-confirm",
}


async def confirm_checkout(
    db: AsyncSession,
    gateway: StripeGateway,
    store: aioredis.Redis,
    paid: type[Paid],
    *,
    namespace: str,
    user_id: uuid.UUID,
    session_id: str,
    terms: PaymentTerms,
    now: datetime,
) -> Paid:
    """The success page and its polled status: the user's own order (or top-up: `paid` says
    which) whose checkout this is, as it is stored. While it is pending, Stripe is asked
    (through the one fulfilment, which marks it paid if it is) at most every CONFIRM_INTERVAL
    per order or top-up, since the webhook may not have arrived yet. Someone else's session, or
    an unknown one, is NotFound and nothing is done. Stripe being away leaves it as it is."""
    owned = (
        await db.execute(
            select(paid.id, paid.status).where(
                paid.checkout_session_id == session_id, paid.user_id == user_id
            )
        )
    ).first()
    if owned is None:
        raise NotFound("There is no such checkout.")
    row_id, status = owned
    if status == "pending" and await _stripe_may_be_asked(
        store, f"{namespace}:{_CONFIRM_THROTTLE[paid]}:{row_id}"
    ):
        # Only ids were read so far: fulfilment locks and loads the row itself, fresh.
        try:
            outcome = await fulfill_checkout(db, gateway, session_id, terms=terms, now=now)
        except (PaymentProviderUnavailable, PaymentsNotConfigured) as error:
            log.warning("checkout_confirmation_deferred", session_id=session_id, error=repr(error))
        else:
            log.info("checkout_confirmed", session_id=session_id, outcome=outcome.text)
    found = await db.get(paid, row_id)
    assert found is not None  # it was there a moment ago, and neither is ever deleted
    return found


# Extensions: more hours for a live fixed-hours instance (docs/architecture.md §4, extensions) --


class PayWith(StrEnum):
    CARD = "card"  # Stripe Checkout; fulfilment extends the instance
    CREDITS = "credits"  # the credit balance, at once


def _extension_fingerprint(instance_id: uuid.UUID, hours: int, pay_with: PayWith) -> str:
    shape = ["extend", str(instance_id), hours, pay_with.value]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ExtensionQuote:
    """What `hours` more of an instance cost now, by the one pricing function."""

    hours: int
    price_cents: int
    currency: str


def quote_extension(catalog: Catalog, instance: Instance, *, hours: int) -> ExtensionQuote:
    """422 for hours outside the pricing policy's range (per extension), or a model that left
    the catalog."""
    valid = extension_configuration(catalog, instance, hours=hours)
    return ExtensionQuote(
        hours=hours,
        price_cents=price_valid(catalog, valid).unit_total_cents,
        currency=catalog.policy.currency,
    )


async def _extension_order(
    db: AsyncSession,
    catalog: Catalog,
    instance: Instance,
    hours: int,
    fingerprint: str,
    idempotency_key: str | None,
    now: datetime,
) -> Order:
    """A pending order of one line that extends `instance` by `hours`, priced from the catalog
    now (422 for hours out of range)."""
    valid = extension_configuration(catalog, instance, hours=hours)
    quoted = price_valid(catalog, valid)
    rates = catalog.rates_for(valid.model)
    order = Order(
        user_id=instance.user_id,
        status=OrderStatus.PENDING,
        currency=catalog.policy.currency,
        total_cents=quoted.line_total_cents,
        refunded_cents=0,
        cart_fingerprint=fingerprint,
        idempotency_key=idempotency_key,
    )
    db.add(order)
    await db.flush()
    db.add(
        OrderLine(
            order_id=order.id,
            position=0,
            gpu_model_id=valid.model.id,
            gpu_slug=instance.gpu_slug,
            gpu_name=instance.gpu_name,
            gpu_count=instance.gpu_count,
            vcpus=instance.vcpus,
            storage_gb=instance.storage_gb,
            hours=hours,
            region=instance.region,
            quantity=1,
            gpu_hour_cents=rates.gpu_hour_cents,
            vcpu_hour_millicents=rates.vcpu_hour_millicents,
            storage_gb_hour_millicents=rates.storage_gb_hour_millicents,
            unit_total_cents=quoted.unit_total_cents,
            line_total_cents=quoted.line_total_cents,
            image_slug=instance.image_slug,
            extends_instance_id=instance.id,
            extends_instance_name=instance.name,
        )
    )
    db.add(
        OrderStatusChange(
            order_id=order.id,
            from_status=None,
            to_status=OrderStatus.PENDING,
            reason=f"extension of {instance.name} by {hours} h",
            changed_at=now,
        )
    )
    await db.flush()
    return order


async def prepare_extension_checkout(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    catalog: Catalog,
    instance_id: uuid.UUID,
    hours: int,
    idempotency_key: str | None,
    now: datetime,
) -> PreparedCheckout:
    """The order paying `hours` more of the caller's live fixed-hours instance by card: a new
    one, or the one that already answers this request (the same Idempotency-Key within 24 h, or
    the same extension's checkout still open). `open_checkout` then opens its session; the one
    fulfilment marks it paid and the instance's provisioning job extends it. 404 for another's
    instance, 409 for one that cannot be extended, 422 for hours out of range."""
    await require_verified_email(db, user_id)
    instance = await lock_own_instance(db, user_id=user_id, instance_id=instance_id)
    check_extendable(instance)
    fingerprint = _extension_fingerprint(instance.id, hours, PayWith.CARD)
    answering = await _answering_order(
        db, user_id=user_id, fingerprint=fingerprint, idempotency_key=idempotency_key, now=now
    )
    if answering is not None:
        return PreparedCheckout(order=answering, reused=True)
    order = await _extension_order(db, catalog, instance, hours, fingerprint, idempotency_key, now)
    return PreparedCheckout(order=order, reused=False)


async def extend_with_credit(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    catalog: Catalog,
    instance_id: uuid.UUID,
    hours: int,
    idempotency_key: str | None,
    seller: Seller,
    now: datetime,
) -> tuple[Order, Instance]:
    """Pay `hours` more of the caller's live fixed-hours instance from the credit balance, in
    the caller's transaction: an order paid at once, a `purchase` entry of exactly its price
    (ledger key `purchase:<order id>`), the instance's paid time extended, the invoice issued.
    The instance is locked first, then the account (as metering does). The same
    Idempotency-Key within 24 h answers the first extension (another extension with it: 409).
    402 `insufficient_credit` (with `shortfall_cents`) when the live balance does not cover
    the price, and nothing is written."""
    await require_verified_email(db, user_id)
    instance = await lock_own_instance(db, user_id=user_id, instance_id=instance_id)
    fingerprint = _extension_fingerprint(instance.id, hours, PayWith.CREDITS)
    if idempotency_key is not None:
        earlier = await _earlier_request(
            db, Order, user_id=user_id, idempotency_key=idempotency_key, now=now
        )
        if earlier is not None:
            if earlier.cart_fingerprint != fingerprint:
                raise Conflict("This Idempotency-Key was used for a different request.")
            return earlier, instance
    check_extendable(instance)
    price_cents = quote_extension(catalog, instance, hours=hours).price_cents
    await credits.lock_account(db, user_id)
    live = (await metering.live_figures(db, user_id, now=now)).live_balance_millicents
    if live < price_cents * MILLICENTS_PER_CENT:
        shortfall_cents = -(-(price_cents * MILLICENTS_PER_CENT - live) // MILLICENTS_PER_CENT)
        raise metering.InsufficientCredit(
            f"Your credit does not cover the extension's {price_cents} cents;"
            f" add at least {shortfall_cents} cents, or pay by card.",
            extensions={"shortfall_cents": shortfall_cents, "live_balance_millicents": live},
        )
    order = await _extension_order(db, catalog, instance, hours, fingerprint, idempotency_key, now)
    orders.transition(order, OrderStatus.PAID, reason="paid with credit", now=now, db=db)
    order.paid_at = order.provisioned_at = now  # nothing to provision: extended below
    await credits.post_entry(
        db,
        user_id=user_id,
        kind=EntryKind.PURCHASE,
        amount_millicents=-price_cents * MILLICENTS_PER_CENT,
        idempotency_key=f"purchase:{order.id}",
        instance_id=instance.id,
        order_id=order.id,
        now=now,
    )
    extend(db, instance, hours=hours, cents=price_cents)
    await invoices.issue_for_order(
        db, order, seller=seller, payment_method=PAID_WITH_CREDIT, now=now
    )
    request_job(db, JobName.SEND_ORDER_RECEIPT, str(order.id))
    # Less credit: a pay-as-you-go instance of the account reaches its cap sooner.
    request_job(db, JobName.ENFORCE_CREDIT_CAP, str(user_id))
    await db.flush()
    return order, instance


# How an invoice names a payment from the credit balance.
PAID_WITH_CREDIT = "Credit balance"


# Top-ups: prepaid credit bought through Checkout (docs/architecture.md §4, top-ups) -------------


class TopUpAmountOutOfRange(AppError):
    status = 422
    code = "top_up_amount_out_of_range"


@dataclass(frozen=True, slots=True)
class PreparedTopUp:
    top_up: CreditTopUp
    reused: bool  # the same Idempotency-Key within 24 h: that top-up answers this request


async def prepare_top_up(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    amount_cents: int,
    currency: str,
    minimum_cents: int,
    maximum_cents: int,
    idempotency_key: str | None,
    now: datetime,
    save_card: bool = False,
) -> PreparedTopUp:
    """The top-up this request pays: a new pending one, or the one the same Idempotency-Key made
    within 24 h (another amount with that key is a Conflict). Holds the wallet's lock, so
    concurrent requests with one key make one top-up. Needs a verified e-mail address."""
    await require_verified_email(db, user_id)
    credits.check_amount_in_range(
        amount_cents,
        minimum_cents=minimum_cents,
        maximum_cents=maximum_cents,
        refusal=TopUpAmountOutOfRange,
        what="A top-up",
    )
    await credits.lock_account(db, user_id)
    if idempotency_key is not None:
        earlier = await _earlier_request(
            db, CreditTopUp, user_id=user_id, idempotency_key=idempotency_key, now=now
        )
        if earlier is not None:
            if earlier.amount_cents != amount_cents:
                raise Conflict("This Idempotency-Key was used for a different amount.")
            return PreparedTopUp(top_up=earlier, reused=True)
    top_up = CreditTopUp(
        user_id=user_id,
        status=TopUpStatus.PENDING,
        amount_cents=amount_cents,
        currency=currency,
        refunded_cents=0,
        idempotency_key=idempotency_key,
        save_card=save_card,
    )
    db.add(top_up)
    await db.flush()
    return PreparedTopUp(top_up=top_up, reused=False)


async def open_top_up_checkout(
    db: AsyncSession,
    gateway: StripeGateway,
    top_up: CreditTopUp,
    *,
    public_base_url: str,
    now: datetime,
) -> CreditTopUp:
    """The top-up with its Checkout Session open: one line, "Compute credit", at the top-up's
    own amount. Stripe is asked with no lock held; the top-up is locked only to record the
    answer. The Stripe idempotency key is the top-up's, so a retry never opens a second
    session; PaymentProviderUnavailable leaves the top-up pending without one."""
    if top_up.checkout_url is not None:
        return top_up
    opened = await _open_session(
        db,
        gateway,
        CheckoutFor.top_up(str(top_up.id)),
        user_id=top_up.user_id,
        currency=top_up.currency,
        lines=[
            CheckoutLine(
                name="Compute credit",
                description="Prepaid credit for GPU instances, billed by the second",
                unit_amount_cents=top_up.amount_cents,
                quantity=1,
            )
        ],
        success_path="/credits/top-ups/success",
        cancel_path="/credits/top-ups/canceled",
        public_base_url=public_base_url,
        now=now,
        save_card=top_up.save_card,
    )
    locked = await credits.lock_top_up(db, top_up.id)
    assert locked is not None  # committed by the first transaction; top-ups are never deleted
    locked.checkout_session_id = opened.session_id
    locked.checkout_url = opened.url
    locked.checkout_expires_at = opened.expires_at
    await db.flush()
    return locked


# Saved cards (docs/architecture.md §4, auto-recharge) -----------------------------------------


async def open_card_setup(
    db: AsyncSession,
    gateway: StripeGateway,
    *,
    user_id: uuid.UUID,
    currency: str,
    public_base_url: str,
    now: datetime,
) -> OpenedCheckout:
    """A Checkout Session in setup mode for the user's Customer, where they save a card. Each
    request opens a session of its own (its Stripe key names the user and a fresh id). Needs a
    verified e-mail address."""
    await require_verified_email(db, user_id)
    base = public_base_url.rstrip("/")
    customer_id = await _customer_for(db, gateway, user_id)
    return await gateway.open_setup_checkout(
        customer_id=customer_id,
        user_id=str(user_id),
        currency=currency,
        success_url=f"{base}/billing?card=saved#cards",
        cancel_url=f"{base}/billing#cards",
        expires_at=now + orders.CHECKOUT_LIFETIME,
        idempotency_key=f"card-setup-{user_id}-{uuid.uuid4()}",
    )
