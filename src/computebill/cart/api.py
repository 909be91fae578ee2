"""The caller's cart (docs/architecture.md §8)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.dependencies import BillingWriteAccess, ReadAccess
from computebill.cart import service
from computebill.cart.schemas import CartItemIn, CartLineOut, CartOut, QuantityIn
from computebill.catalog.api import validate_body
from computebill.catalog.service import Catalog, ValidConfiguration
from computebill.deps import CatalogDep, SessionDep

router = APIRouter(prefix="/api/v1/cart", tags=["cart"])


def _cart_out(cart: service.PricedCart) -> CartOut:
    lines = [
        CartLineOut(
            id=line.item.id,
            gpu=line.model.slug,
            gpu_name=line.model.name,
            gpu_count=line.item.gpu_count,
            vcpus=line.item.vcpus,
            storage_gb=line.item.storage_gb,
            hours=line.item.hours,
            region=line.item.region,
            quantity=line.item.quantity,
            available=line.model.active,
            hourly_cents=line.current.hourly_cents,
            unit_total_cents=line.current.unit_total_cents,
            line_total_cents=line.current.line_total_cents,
            price_changed=line.price_changed,
            previous_line_total_cents=(
                line.at_added.line_total_cents if line.price_changed else None
            ),
            ssh_key_ids=line.item.ssh_key_ids,
            image=line.image.slug if line.image else None,
            image_name=line.image.name if line.image else None,
            image_available=line.image_available,
        )
        for line in cart.lines
    ]
    return CartOut(
        items=lines,
        item_count=sum(line.quantity for line in lines),
        total_cents=cart.total_cents,
        currency=cart.currency,
    )


async def _current_cart(db: SessionDep, user_id: uuid.UUID, catalog: Catalog) -> CartOut:
    return _cart_out(await service.priced_cart(db, user_id=user_id, catalog=catalog))


@router.get("", response_model=CartOut)
async def get_cart(principal: ReadAccess, db: SessionDep, catalog: CatalogDep) -> CartOut:
    return await _current_cart(db, principal.user_id, catalog)


async def add_body(
    db: AsyncSession, *, user_id: uuid.UUID, catalog: Catalog, body: CartItemIn
) -> tuple[ValidConfiguration, list[service.CartLine]]:
    """Add what a `CartItemIn` names (the API's body, or a page's form): the configuration as
    checked, and the cart after the change."""
    valid = validate_body(catalog, body, quantity=body.quantity)
    lines = await service.add_item(
        db,
        user_id=user_id,
        catalog=catalog,
        valid=valid,
        ssh_key_ids=body.ssh_key_ids,
        image=body.image,
    )
    return valid, lines


@router.post("/items", response_model=CartOut, status_code=status.HTTP_201_CREATED)
async def add_item(
    body: CartItemIn, principal: BillingWriteAccess, db: SessionDep, catalog: CatalogDep
) -> CartOut:
    _, lines = await add_body(db, user_id=principal.user_id, catalog=catalog, body=body)
    return _cart_out(service.price_cart(lines, catalog))


@router.patch("/items/{item_id}", response_model=CartOut)
async def change_quantity(
    item_id: uuid.UUID,
    body: QuantityIn,
    principal: BillingWriteAccess,
    db: SessionDep,
    catalog: CatalogDep,
) -> CartOut:
    await service.set_quantity(
        db, user_id=principal.user_id, item_id=item_id, quantity=body.quantity
    )
    return await _current_cart(db, principal.user_id, catalog)


@router.delete("/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_item(
    item_id: uuid.UUID, principal: BillingWriteAccess, db: SessionDep
) -> Response:
    await service.remove_item(db, user_id=principal.user_id, item_id=item_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
