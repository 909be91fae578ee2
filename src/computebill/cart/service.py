"""The cart: one per user, in PostgreSQL, priced from the current catalog on every read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Integer,
    Row,
    String,
    Uuid,
    bindparam,
    delete,
    exists,
    false,
    func,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.cart.models import CartItem
from computebill.cart.schemas import MAX_QUANTITY
from computebill.catalog.description import LineDescription
from computebill.catalog.models import GpuModel, MachineImage
from computebill.catalog.pricing import Configuration, Price, Rates, price
from computebill.catalog.service import Catalog, ValidConfiguration, chosen_image
from computebill.errors import AppError, NotFound
from computebill.sshkeys import service as sshkeys

MAX_ITEMS = 20


class CartLimit(AppError):
    status = 422
    code = "cart_limit"


@dataclass(frozen=True, slots=True)
class CartLine:
    """One line of a cart as stored: a configuration, how many, and the rates it was added at
    (to notice a change of price)."""

    id: uuid.UUID
    gpu_model_id: uuid.UUID
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int
    region: str
    quantity: int
    added_rates: Rates
    ssh_key_ids: list[uuid.UUID]
    image_id: uuid.UUID | None  # None: a line from before images, checked out with the default
    created_at: datetime

    @property
    def configuration(self) -> Configuration:
        return Configuration(
            gpu_count=self.gpu_count,
            vcpus=self.vcpus,
            storage_gb=self.storage_gb,
            hours=self.hours,
            quantity=self.quantity,
        )


@dataclass(frozen=True, slots=True)
class PricedLine:
    item: CartLine
    model: GpuModel
    image: MachineImage | None  # what its instances are to be installed with
    # False when the image has left the catalog, or is no longer offered for the line's GPU:
    # checkout refuses the line.
    image_available: bool
    current: Price
    at_added: Price

    @property
    def price_changed(self) -> bool:
        return self.current.line_total_cents != self.at_added.line_total_cents

    @property
    def description(self) -> LineDescription:
        return LineDescription.of(self.item, gpu_name=self.model.name)


@dataclass(frozen=True, slots=True)
class PricedCart:
    lines: list[PricedLine]
    currency: str

    @property
    def total_cents(self) -> int:
        return sum(line.current.line_total_cents for line in self.lines if line.model.active)


# The cart's hot statements, built once so that SQLAlchemy compiles each once and caches it;
# run on the session's connection as Core (rows, no identity map).
_LINE = (
    CartItem.id,
    CartItem.gpu_model_id,
    CartItem.gpu_count,
    CartItem.vcpus,
    CartItem.storage_gb,
    CartItem.hours,
    CartItem.region,
    CartItem.quantity,
    CartItem.added_gpu_hour_cents,
    CartItem.added_vcpu_hour_millicents,
    CartItem.added_storage_gb_hour_millicents,
    CartItem.ssh_key_ids,
    CartItem.image_id,
    CartItem.created_at,
)
# A line's configuration beside its model and region, and the rates it was added at.
_SIZES = ("gpu_count", "vcpus", "storage_gb", "hours")
_RATES = ("added_gpu_hour_cents", "added_vcpu_hour_millicents", "added_storage_gb_hour_millicents")
_LOCK = select(User.id).where(User.id == bindparam("owner")).with_for_update()
_LINES = select(*_LINE).where(CartItem.user_id == bindparam("owner")).order_by(CartItem.created_at)


def _add_statement() -> CompoundSelect[*tuple[Any, ...]]:
    """Add a configuration in one statement, under the cart's lock (taken by the statement
    before, so this one reads the cart as the lock left it): insert it as a new line, or, when
    the cart holds it already, raise that line's quantity; within the limits (MAX_ITEMS lines,
    MAX_QUANTITY of one), else change nothing. Answers the cart after the change, in the order
    a read gives, each line marked whether this statement wrote it.

    Its parameters are named unlike any column (`new_…`): SQLAlchemy would take an execution
    parameter named as a column for a value to write."""
    owner = bindparam("owner", type_=Uuid)
    model, region = bindparam("new_model", type_=Uuid), bindparam("new_region", type_=String)
    sizes = [bindparam(f"new_{name}", type_=Integer) for name in _SIZES]
    rates = [bindparam(f"new_{name}", type_=BigInteger) for name in _RATES]
    present = select(*_LINE).where(CartItem.user_id == owner).cte("present")
    held = exists().where(
        present.c.gpu_model_id == model,
        *(present.c[name] == size for name, size in zip(_SIZES, sizes, strict=True)),
        present.c.region == region,
    )
    lines_held = select(func.count()).select_from(present).scalar_subquery()
    new_line = insert(CartItem).from_select(
        [
            "id",
            "user_id",
            "gpu_model_id",
            *_SIZES,
            "region",
            "quantity",
            *_RATES,
            "ssh_key_ids",
            "image_id",
        ],
        select(
            bindparam("new_id", type_=Uuid),
            owner,
            model,
            *sizes,
            region,
            bindparam("new_quantity", type_=Integer),
            *rates,
            bindparam("new_ssh_key_ids", type_=ARRAY(Uuid)),
            bindparam("new_image_id", type_=Uuid),
        ).where(or_(held, lines_held < MAX_ITEMS)),
    )
    excluded = new_line.excluded
    changed = (
        new_line.on_conflict_do_update(
            constraint="uq_cart_items_configuration",
            set_={
                "quantity": CartItem.quantity + excluded.quantity,
                # The user has now seen today's price.
                **{name: excluded[name] for name in _RATES},
                # And chosen the keys and the image anew.
                "ssh_key_ids": excluded.ssh_key_ids,
                "image_id": excluded.image_id,
                "updated_at": func.now(),
            },
            where=CartItem.quantity + excluded.quantity <= MAX_QUANTITY,
        )
        .returning(*_LINE)
        .cte("changed")
    )
    return union_all(
        select(changed, true().label("written")),
        select(present, false()).where(present.c.id.not_in(select(changed.c.id))),
    ).order_by("created_at")


_ADD = _add_statement()


async def lock_cart(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialise everything done to one user's cart: changes (the item limit is a
    read-then-write) and checkout, which reads the cart it turns into an order. The one lock
    is the user's row, so it holds for a cart with no lines yet."""
    await (await db.connection()).execute(_LOCK, {"owner": user_id})


class Purchased(NamedTuple):
    """What identifies a cart line: a bought line takes the cart's line of the same shape."""

    gpu_model_id: uuid.UUID
    gpu_count: int
    vcpus: int
    storage_gb: int
    hours: int
    region: str


def _shape(line: CartLine) -> Purchased:
    return Purchased(
        line.gpu_model_id, line.gpu_count, line.vcpus, line.storage_gb, line.hours, line.region
    )


def _line(row: Row[*tuple[Any, ...]]) -> CartLine:
    return CartLine(
        id=row.id,
        gpu_model_id=row.gpu_model_id,
        gpu_count=row.gpu_count,
        vcpus=row.vcpus,
        storage_gb=row.storage_gb,
        hours=row.hours,
        region=row.region,
        quantity=row.quantity,
        added_rates=Rates(
            gpu_hour_cents=row.added_gpu_hour_cents,
            vcpu_hour_millicents=row.added_vcpu_hour_millicents,
            storage_gb_hour_millicents=row.added_storage_gb_hour_millicents,
        ),
        ssh_key_ids=list(row.ssh_key_ids),
        image_id=row.image_id,
        created_at=row.created_at,
    )


def line_of(lines: list[CartLine], valid: ValidConfiguration) -> CartLine | None:
    """The line of `lines` that holds this configuration, if one does."""
    configuration = valid.configuration
    shape = Purchased(
        valid.model.id,
        configuration.gpu_count,
        configuration.vcpus,
        configuration.storage_gb,
        configuration.hours,
        valid.region,
    )
    return next((line for line in lines if _shape(line) == shape), None)


async def cart_lines(db: AsyncSession, user_id: uuid.UUID) -> list[CartLine]:
    """The user's cart as stored, in the order its lines were added."""
    rows = await (await db.connection()).execute(_LINES, {"owner": user_id})
    return [_line(row) for row in rows]


async def add_item(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    catalog: Catalog,
    valid: ValidConfiguration,
    ssh_key_ids: list[uuid.UUID] | None = None,
    image: str | None = None,
) -> list[CartLine]:
    """Add a configuration; an identical one already in the cart gets its quantity raised (and
    the keys and image chosen now). Its instances get the SSH keys `ssh_key_ids` names (422
    `unknown_ssh_key` for one not the account's), or every key the account has now when None,
    and are installed with the offered machine image `image` names (422 `unknown_image`
    otherwise), or the default one when None. Answers the cart after the change (one statement
    writes and reads it), so the caller need not read it again."""
    installed = chosen_image(catalog, image, valid.model)
    keys = await sshkeys.chosen_keys(db, user_id=user_id, key_ids=ssh_key_ids)
    await lock_cart(db, user_id)
    configuration, rates = valid.configuration, catalog.rates_for(valid.model)
    rows = await (await db.connection()).execute(
        _ADD,
        {
            "owner": user_id,
            "new_id": uuid.uuid4(),
            "new_model": valid.model.id,
            "new_gpu_count": configuration.gpu_count,
            "new_vcpus": configuration.vcpus,
            "new_storage_gb": configuration.storage_gb,
            "new_hours": configuration.hours,
            "new_region": valid.region,
            "new_quantity": configuration.quantity,
            "new_added_gpu_hour_cents": rates.gpu_hour_cents,
            "new_added_vcpu_hour_millicents": rates.vcpu_hour_millicents,
            "new_added_storage_gb_hour_millicents": rates.storage_gb_hour_millicents,
            "new_ssh_key_ids": [key.id for key in keys],
            "new_image_id": installed.id if installed else None,
        },
    )
    written, lines = False, []
    for row in rows:
        written = written or row.written
        lines.append(_line(row))
    if written:
        return lines
    held = line_of(lines, valid)
    if held is not None:
        raise CartLimit(
            f"At most {MAX_QUANTITY} of one configuration; the cart already has {held.quantity}."
        )
    raise CartLimit(f"A cart holds at most {MAX_ITEMS} configurations.")


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
    return price_cart(await cart_lines(db, user_id), catalog)


def price_cart(lines: list[CartLine], catalog: Catalog) -> PricedCart:
    """The lines priced from the catalog now, and at the rates they were added at."""
    models = {model.id: (model, catalog.rates_for(model)) for model in catalog.models}
    images = {image.id: image for image in catalog.images}
    priced = []
    for line in lines:
        model, rates = models[line.gpu_model_id]
        configuration = line.configuration
        current = price(rates, configuration)
        image = catalog.default_image(model) if line.image_id is None else images.get(line.image_id)
        priced.append(
            PricedLine(
                item=line,
                model=model,
                image=image,
                image_available=image is None or image in catalog.images_for(model),
                current=current,
                at_added=(
                    current if line.added_rates == rates else price(line.added_rates, configuration)
                ),
            )
        )
    return PricedCart(lines=priced, currency=catalog.policy.currency)
