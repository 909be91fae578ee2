"""The cart page: add from the configurator, change quantities in place, remove. Its Checkout
button posts to the payments domain's `/checkout`, which answers a refusal with this page.

The same services as the JSON API (`cart.service`). With
htmx, a change answers the cart partial and the header's item count (an out-of-band swap);
without JavaScript, it answers a redirect back to the cart."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from computebill.auth.browser import CustomerDep, Visitor, VisitorDep, verify_csrf
from computebill.cart import service
from computebill.cart.schemas import MAX_QUANTITY
from computebill.catalog.pages import check_configuration, refused_configuration
from computebill.catalog.service import Catalog
from computebill.deps import CatalogDep, SessionDep
from computebill.errors import AppError
from computebill.web.login import login_url
from computebill.web.rendering import redirect, render

log = structlog.get_logger(__name__)

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def cart_response(
    request: Request,
    db: SessionDep,
    catalog: Catalog,
    *,
    user_id: uuid.UUID,
    visitor: Visitor,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
    partial: bool = False,
) -> Response:
    """The cart as it is now: the whole page, or (for htmx) its partial with the header count."""
    cart = await service.priced_cart(db, user_id=user_id, catalog=catalog)
    count = sum(line.item.quantity for line in cart.lines)
    context: dict[str, Any] = {
        "cart": cart,
        "item_count": count,
        "any_unavailable": any(not line.model.active for line in cart.lines),
        "max_quantity": MAX_QUANTITY,
        "error": error,
        "notice": notice,
        "oob_count": partial,
    }
    template = "_cart.html" if partial else "cart.html"
    return render(
        request,
        template,
        context,
        visitor=dataclasses.replace(visitor, cart_count=count),
        status_code=status_code,
    )


@router.get("/cart")
async def cart_page(
    request: Request, customer: CustomerDep, db: SessionDep, catalog: CatalogDep
) -> Response:
    return await cart_response(
        request, db, catalog, user_id=customer.user_id, visitor=customer.visitor
    )


IntForm = Annotated[int, Form()]
TextForm = Annotated[str, Form(max_length=40)]
# A number as typed: the configurator's check says what is wrong with it, beside its field.
TypedNumber = Annotated[str, Form(max_length=12)]


def not_added(reason: str) -> str:
    return f"That configuration was not added: {reason}"


@router.post("/cart/items")
async def add_to_cart(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    catalog: CatalogDep,
    gpu: TextForm,
    gpu_count: TypedNumber = "",
    vcpus: TypedNumber = "",
    storage_gb: TypedNumber = "",
    hours: TypedNumber = "",
    region: Annotated[str | None, Form(max_length=40)] = None,
    quantity: Annotated[int, Form(ge=1, le=MAX_QUANTITY)] = 1,
    image: Annotated[str | None, Form(max_length=40)] = None,
) -> Response:
    """Add the configurator's configuration, checked as its price box checks it (a refusal
    goes back to the configurator, beside the field); a visitor who is not signed in logs in
    first and comes back to the same configuration."""
    options = {
        "gpu_count": gpu_count,
        "vcpus": vcpus,
        "storage_gb": storage_gb,
        "hours": hours,
        **({"region": region} if region else {}),
        **({"image": image} if image else {}),
    }
    checked = check_configuration(catalog, gpu, options, quantity=quantity)
    if checked.valid is None:
        message = not_added(checked.error)
        return refused_configuration(
            request, catalog, visitor, gpu, options, checked, message=message
        )
    if visitor.principal is None:
        return redirect(login_url(f"/gpus/{gpu}?{urlencode(options)}"), request)
    user_id = visitor.principal.user_id
    try:
        await service.add_item(
            db,
            user_id=user_id,
            catalog=catalog,
            valid=checked.valid,
            ssh_key_ids=None,
            image=image or None,
        )
    except AppError as error:
        message = not_added(error.detail)
        if _is_htmx(request):
            # Shown beside the button (htmx swaps a 200, not an error status).
            return render(request, "_cart_add_error.html", {"error": message}, visitor=visitor)
        return await cart_response(
            request,
            db,
            catalog,
            user_id=user_id,
            visitor=visitor,
            error=message,
            status_code=error.status,
        )
    return redirect("/cart", request)


async def _after_change(
    request: Request,
    db: SessionDep,
    catalog: Catalog,
    customer: CustomerDep,
    *,
    notice: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    if _is_htmx(request):
        # Always a 200, so htmx swaps it in, error message included.
        return await cart_response(
            request,
            db,
            catalog,
            user_id=customer.user_id,
            visitor=customer.visitor,
            notice=None if error else notice,
            error=error,
            partial=True,
        )
    if error:
        return await cart_response(
            request,
            db,
            catalog,
            user_id=customer.user_id,
            visitor=customer.visitor,
            error=error,
            status_code=status_code,
        )
    return redirect("/cart", request)


@router.post("/cart/items/{item_id}/quantity")
async def change_quantity(
    request: Request,
    item_id: uuid.UUID,
    customer: CustomerDep,
    db: SessionDep,
    catalog: CatalogDep,
    quantity: IntForm,
) -> Response:
    if not 1 <= quantity <= MAX_QUANTITY:
        return await _after_change(
            request,
            db,
            catalog,
            customer,
            notice="",
            error=f"The quantity must be between 1 and {MAX_QUANTITY}.",
            status_code=422,
        )
    await service.set_quantity(db, user_id=customer.user_id, item_id=item_id, quantity=quantity)
    return await _after_change(request, db, catalog, customer, notice="Quantity updated.")


@router.post("/cart/items/{item_id}/remove")
async def remove_item(
    request: Request,
    item_id: uuid.UUID,
    customer: CustomerDep,
    db: SessionDep,
    catalog: CatalogDep,
) -> Response:
    await service.remove_item(db, user_id=customer.user_id, item_id=item_id)
    return await _after_change(request, db, catalog, customer, notice="Removed from the cart.")
