"""Saved cards: a Checkout Session in setup mode (`checkout.open_card_setup`), or a top-up paid
with "save this card", leaves a card on the user's Stripe Customer; it is stored here and made
the Customer's default, which auto-recharge charges (docs/architecture.md §4, auto-recharge).

Stripe is asked with no row locked; the user's Customer row is locked only to write what Stripe
answered, so two cards saved at once leave exactly one default."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import Row, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from computebill.errors import NotFound
from computebill.payments.gateway import StripeGateway
from computebill.payments.models import AutoRechargeRule, PaymentMethod, StripeCustomer

log = structlog.get_logger(__name__)

NO_CARD_LEFT = "No saved card is left to charge: add a card, then turn auto-recharge on again."


async def customer_of(db: AsyncSession, user_id: uuid.UUID) -> str | None:
    """The user's Stripe Customer id, if they have one."""
    return await db.scalar(
        select(StripeCustomer.customer_id).where(StripeCustomer.user_id == user_id)
    )


async def user_of_customer(db: AsyncSession, customer_id: str) -> uuid.UUID | None:
    return await db.scalar(
        select(StripeCustomer.user_id).where(StripeCustomer.customer_id == customer_id)
    )


async def _lock_customer(db: AsyncSession, user_id: uuid.UUID) -> None:
    await db.execute(
        select(StripeCustomer.user_id).where(StripeCustomer.user_id == user_id).with_for_update()
    )


async def save_card(
    db: AsyncSession, gateway: StripeGateway, *, customer_id: str, payment_method_id: str
) -> PaymentMethod | None:
    """Store a card Stripe attached to the Customer and make it the default, at Stripe and
    here. Safe to repeat. None (and nothing stored) when the card is not that Customer's or the
    Customer is no user's."""
    user_id = await user_of_customer(db, customer_id)
    card = await gateway.retrieve_card(payment_method_id)
    if user_id is None or card.customer_id != customer_id:
        log.warning(
            "card_not_saved",
            payment_method_id=payment_method_id,
            customer_id=customer_id,
            attached_to=card.customer_id,
        )
        return None
    await gateway.make_default_card(customer_id=customer_id, payment_method_id=payment_method_id)
    await _lock_customer(db, user_id)
    await db.execute(
        update(PaymentMethod)
        .where(PaymentMethod.user_id == user_id, PaymentMethod.is_default)
        .values(is_default=False)
    )
    saved = await db.scalar(
        insert(PaymentMethod)
        .values(
            user_id=user_id,
            stripe_payment_method_id=card.payment_method_id,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            is_default=True,
        )
        .on_conflict_do_update(
            index_elements=[PaymentMethod.stripe_payment_method_id],
            set_={"is_default": True},
        )
        .returning(PaymentMethod)
        .execution_options(populate_existing=True)
    )
    log.info("card_saved", user_id=str(user_id), payment_method_id=payment_method_id)
    return saved


async def list_cards(db: AsyncSession | AsyncConnection, user_id: uuid.UUID) -> list[Row[Any]]:
    """The user's saved cards (their columns), the default first, then the newest."""
    rows = await db.execute(
        select(*PaymentMethod.__table__.c)
        .where(PaymentMethod.user_id == user_id)
        .order_by(PaymentMethod.is_default.desc(), PaymentMethod.created_at.desc())
    )
    return list(rows)


_BRANDS = {"amex": "American Express", "mastercard": "Mastercard", "visa": "Visa"}


def card_label(brand: str, last4: str) -> str:
    """A card as invoices name it: "Visa •••• 4242"."""
    return f"{_BRANDS.get(brand, brand.title())} •••• {last4}"


async def card_named(db: AsyncSession, stripe_payment_method_id: str) -> str:
    """The saved card's label; "Card" once it has been removed."""
    card = await db.scalar(
        select(PaymentMethod).where(
            PaymentMethod.stripe_payment_method_id == stripe_payment_method_id
        )
    )
    return card_label(card.brand, card.last4) if card is not None else "Card"


async def default_card(db: AsyncSession, user_id: uuid.UUID) -> PaymentMethod | None:
    return await db.scalar(
        select(PaymentMethod).where(PaymentMethod.user_id == user_id, PaymentMethod.is_default)
    )


async def remove_card(
    db: AsyncSession, gateway: StripeGateway, *, user_id: uuid.UUID, card_id: uuid.UUID
) -> None:
    """Detach the user's card at Stripe, then delete it here. The next newest card becomes the
    default; with none left, an enabled auto-recharge is paused and says why."""
    cards = await list_cards(db, user_id)
    removed = next((card for card in cards if card.id == card_id), None)
    if removed is None:
        raise NotFound("There is no such card.")
    others = [card for card in cards if card.id != card_id]
    successor = others[0] if removed.is_default and others else None
    await gateway.detach_card(removed.stripe_payment_method_id)
    if successor is not None:
        customer_id = await customer_of(db, user_id)
        assert customer_id is not None  # its cards were saved on it
        await gateway.make_default_card(
            customer_id=customer_id, payment_method_id=successor.stripe_payment_method_id
        )
    await _lock_customer(db, user_id)
    await db.execute(delete(PaymentMethod).where(PaymentMethod.id == card_id))
    if successor is not None:
        await db.execute(
            update(PaymentMethod).where(PaymentMethod.id == successor.id).values(is_default=True)
        )
    if not others:
        await db.execute(
            update(AutoRechargeRule)
            .where(AutoRechargeRule.user_id == user_id, AutoRechargeRule.enabled)
            .values(paused_reason=NO_CARD_LEFT)
        )
    log.info(
        "card_removed", user_id=str(user_id), payment_method_id=removed.stripe_payment_method_id
    )
