"""The cart: one per user, in PostgreSQL, priced from the current catalog on every read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.cart.models import CartItem
from computebill.cart.schemas import MAX_QUANTITY
from computebill.catalog.models import GpuModel
from computebill.catalog.pricing import Configuration, Price, Rates, price
from computebill.catalog.service import Catalog, ValidConfiguration
from computebill.errors import AppError, NotFound

MAX_ITEMS = 20


class CartLimit(AppError):
    status = 422
    code = "cart_limit"


@dataclass(frozen=True, slots=True)
class PricedLine:
    item: CartItem
    model: GpuModel
    current: Price
    at_added: Price

    @property
    def price_changed(self) -> bool:
        return self.current.line_total_cents != self.at_added.line_total_cents


@dataclass(frozen=True, slots=True)
class PricedCart:
    lines: list[PricedLine]
    currency: str

    @property
    def total_cents(self) -> int:
        return sum(line.current.line_total_cents for line in self.lines if line.model.active)


async def lock_cart(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialise everything done to one user's cart: changes (the item limit is a
    read-then-write) and checkout, which reads the cart it turns into an order. The one lock
    is the user's row, so it holds for a cart with no lines yet."""
    await db.execute(select(User.id).where(User.id == user_id).with_for_update())


class Purchased(NamedTuple):
    """What identifies a cart line: a bought line takes the cart's line of the same shape."""

    gpu_model_id: uuid.UUID
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int
    region: str


def _snapshot_rates(item: CartItem, catalog: Catalog, model: GpuModel) -> None:
    rates = catalog.rates_for(model)
    item.added_gpu_hour_cents = rates.gpu_hour_cents
    item.added_vcpu_hour_millicents = rates.vcpu_hour_millicents
    item.added_storage_gb_hour_millicents = rates.storage_gb_hour_millicents


async def add_item(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    catalog: Catalog,
    valid: ValidConfiguration,
) -> CartItem:
    """Add a configuration; an identical one already in the cart gets its quantity raised."""
    await lock_cart(db, user_id)
    configuration = valid.configuration
    existing = await db.scalar(
        select(CartItem).where(
            CartItem.user_id == user_id,
            CartItem.gpu_model_id == valid.model.id,
            CartItem.gpu_count == configuration.gpu_count,
            CartItem.vcpus == configuration.vcpus,
            CartItem.storage_gb == configuration.storage_gb,
            CartItem.hours == configuration.hours,
            CartItem.region == valid.region,
        )
    )
    if existing is not None:
        quantity = existing.quantity + configuration.quantity
        if quantity > MAX_QUANTITY:
            raise CartLimit(
                f"At most {MAX_QUANTITY} of one configuration; the cart already has "
                f"{existing.quantity}."
            )
        existing.quantity = quantity
        _snapshot_rates(existing, catalog, valid.model)  # the user has now seen today's price
        await db.flush()
        return existing
    count = await db.scalar(select(func.count()).where(CartItem.user_id == user_id))
    if (count or 0) >= MAX_ITEMS:
        raise CartLimit(f"A cart holds at most {MAX_ITEMS} configurations.")
    item = CartItem(
        user_id=user_id,
        gpu_model_id=valid.model.id,
        gpu_count=configuration.gpu_count,
        vcpus=configuration.vcpus,
        storage_gb=configuration.storage_gb,
        hours=configuration.hours,
        region=valid.region,
        quantity=configuration.quantity,
    )
    _snapshot_rates(item, catalog, valid.model)
    db.add(item)
    await db.flush()
    return item


async def _owned_item(db: AsyncSession, *, user_id: uuid.UUID, item_id: uuid.UUID) -> CartItem:
    item = await db.scalar(
        select(CartItem).where(CartItem.id == item_id, CartItem.user_id == user_id)
    )
    if item is None:
        raise NotFound("No such cart item.")  # the same for someone else's: ids do not leak
    return item


async def set_quantity(
    db: AsyncSession, *, user_id: uuid.UUID, item_id: uuid.UUID, quantity: int
) -> None:
    await lock_cart(db, user_id)
    item = await _owned_item(db, user_id=user_id, item_id=item_id)
    item.quantity = quantity
    await db.flush()


async def remove_item(db: AsyncSession, *, user_id: uuid.UUID, item_id: uuid.UUID) -> None:
    await lock_cart(db, user_id)
    await db.delete(await _owned_item(db, user_id=user_id, item_id=item_id))
    await db.flush()


async def item_count(db: AsyncSession, user_id: uuid.UUID) -> int:
    """How many items the user's cart holds, quantities added up: the count in the page header."""
    count = await db.scalar(
        select(func.coalesce(func.sum(CartItem.quantity), 0)).where(CartItem.user_id == user_id)
    )
    return int(count or 0)


async def remove_purchased(
    db: AsyncSession, *, user_id: uuid.UUID, purchased: list[Purchased]
) -> None:
    """Take what was bought out of the cart; what was added since stays. Under the cart's lock,
    so an add of the same configuration waits, then makes a line of its own, instead of
    raising on the line deleted under it."""
    await lock_cart(db, user_id)
    await db.execute(
        delete(CartItem).where(
            CartItem.user_id == user_id,
            tuple_(
                CartItem.gpu_model_id,
                CartItem.gpu_count,
                CartItem.vcpus,
                CartItem.storage_gb,
                CartItem.hours,
                CartItem.region,
            ).in_([tuple(line) for line in purchased]),
        )
    )


async def priced_cart(db: AsyncSession, *, user_id: uuid.UUID, catalog: Catalog) -> PricedCart:
    items = await db.scalars(
        select(CartItem).where(CartItem.user_id == user_id).order_by(CartItem.created_at)
    )
    models = {model.id: model for model in catalog.models}
    lines = []
    for item in items:
        model = models[item.gpu_model_id]
        configuration = Configuration(
            gpu_count=item.gpu_count,
            vcpus=item.vcpus,
            storage_gb=item.storage_gb,
            hours=item.hours,
            quantity=item.quantity,
        )
        added_rates = Rates(
            gpu_hour_cents=item.added_gpu_hour_cents,
            vcpu_hour_millicents=item.added_vcpu_hour_millicents,
            storage_gb_hour_millicents=item.added_storage_gb_hour_millicents,
        )
        lines.append(
            PricedLine(
                item=item,
                model=model,
                current=price(catalog.rates_for(model), configuration),
                at_added=price(added_rates, configuration),
            )
        )
    return PricedCart(lines=lines, currency=catalog.policy.currency)
