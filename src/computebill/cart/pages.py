"""The cart page: add from the configurator, change quantities in place, remove. Its Checkout
button posts to the payments domain's `/checkout`, which answers a refusal with this page.

The same services as the JSON API (`cart.service`). With
htmx, a change answers the cart partial and the header's item count (an out-of-band swap);
without JavaScript, it answers a redirect back to the cart."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from computebill.auth.browser import (
    CustomerDep,
    LoginFirstDep,
    LoginIntentDep,
    Visitor,
    VisitorDep,
    take_login_intent,
    verify_csrf,
)
from computebill.auth.intents import INTENT_LIFETIME
from computebill.cart import service
from computebill.cart.api import add_body
from computebill.cart.schemas import MAX_QUANTITY, CartItemIn
from computebill.catalog.description import machine_gpus
from computebill.catalog.pages import check_configuration, refused_configuration
from computebill.catalog.service import Catalog, chosen_image
from computebill.deps import AuthDep, CatalogDep, SessionDep, SettingsDep
from computebill.errors import AppError, error_response
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
    added: uuid.UUID | None = None,
    status_code: int = 200,
    partial: bool = False,
) -> Response:
    """The cart as it is now: the whole page, or (for htmx) its partial with the header count.
    The page says which line was just added (`added`), when the cart holds it."""
    cart = await service.priced_cart(db, user_id=user_id, catalog=catalog)
    just_added = next((line for line in cart.lines if line.item.id == added), None)
    count = sum(line.item.quantity for line in cart.lines)
    context: dict[str, Any] = {
        "cart": cart,
        "item_count": count,
        "any_unavailable": any(not line.model.active for line in cart.lines),
        "max_quantity": MAX_QUANTITY,
        "error": error,
        "notice": notice,
        "added_notice": (
            f"Added {just_added.description.gpus} to your cart." if just_added else None
        ),
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


# The cart after a redirect, by a fixed key: no text from the query string reaches the page.
PENDING_REFUSALS = {
    "pending-unavailable": (
        "What you chose before logging in was not added: that configuration is no longer "
        "offered. Choose another one from the catalog."
    ),
    "pending-cart-full": (
        "What you chose before logging in was not added: your cart is full. Remove a line or "
        "lower a quantity, then add it again."
    ),
    # No cookie: it lapsed, was added already, or the link came from elsewhere.
    "pending-none": (
        "Nothing was waiting to be added: what you choose before logging in is kept for "
        f"{int(INTENT_LIFETIME.total_seconds()) // 60} minutes and added once. Choose it again "
        "from the catalog."
    ),
}


@router.get("/cart")
async def cart_page(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    catalog: CatalogDep,
    added: uuid.UUID | None = None,
    refused: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The cart; `added` names the line just added, for the notice that says so."""
    return await cart_response(
        request,
        db,
        catalog,
        user_id=customer.user_id,
        visitor=customer.visitor,
        added=added,
        error=PENDING_REFUSALS.get(refused or ""),
    )


IntForm = Annotated[int, Form()]
TextForm = Annotated[str, Form(max_length=40)]
# A number as typed: the configurator's check says what is wrong with it, beside its field.
TypedNumber = Annotated[str, Form(max_length=12)]
# Where a visitor who pressed "Add to cart" signed out lands once signed in.
PENDING_ADD = "/cart/pending"


def not_added(reason: str) -> str:
    return f"That configuration was not added: {reason}"


@router.post("/cart/items")
async def add_to_cart(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    catalog: CatalogDep,
    log_in_first: LoginFirstDep,
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
    goes back to the configurator, beside the field). A visitor who is not signed in is sent to
    log in (or sign up) first, told what for; it is added when they are back (`PENDING_ADD`)."""
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
    valid, configuration = checked.valid, checked.valid.configuration
    item = CartItemIn(
        gpu=valid.model.slug,
        gpu_count=configuration.gpu_count,
        vcpus=configuration.vcpus,
        storage_gb=configuration.storage_gb,
        hours=configuration.hours,
        region=valid.region,
        quantity=quantity,
        image=image or None,
    )
    try:
        if visitor.principal is None:
            chosen_image(catalog, item.image, valid.model)
            return log_in_first(
                next=PENDING_ADD,
                reason=f"add {machine_gpus(item.gpu_count, valid.model.name)} to your cart",
                details=item.model_dump(mode="json", exclude={"ssh_key_ids"}),
            )
        await add_body(db, user_id=visitor.principal.user_id, catalog=catalog, body=item)
    except AppError as error:
        message = not_added(error.detail)
        if _is_htmx(request):
            # Shown beside the button (htmx swaps a 200, not an error status).
            return render(request, "_cart_add_error.html", {"error": message}, visitor=visitor)
        if visitor.principal is None:
            return error_response(request, status=error.status, code=error.code, detail=message)
        return await cart_response(
            request,
            db,
            catalog,
            user_id=visitor.principal.user_id,
            visitor=visitor,
            error=message,
            status_code=error.status,
        )
    return redirect("/cart", request)


@router.get(PENDING_ADD)
async def add_pending(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    catalog: CatalogDep,
    auth: AuthDep,
    settings: SettingsDep,
    intent: LoginIntentDep,
) -> Response:
    """What the visitor chose before logging in or signing up, added now and once, then the
    cart. Only the signed cookie their signed-out "Add to cart" set (a form post, with its CSRF
    token) adds anything: this address alone, a link from anywhere, adds nothing."""
    pending = await take_login_intent(
        request, intent, auth=auth, settings=settings, next=PENDING_ADD
    )
    if pending is None:
        return redirect("/cart?refused=pending-none", request)
    try:
        item = CartItemIn.model_validate(pending.details)
        valid, lines = await add_body(db, user_id=customer.user_id, catalog=catalog, body=item)
    except service.CartLimit:
        return redirect("/cart?refused=pending-cart-full", request)
    except (AppError, ValidationError) as refusal:
        log.info("pending_add_refused", error=repr(refusal))
        return redirect("/cart?refused=pending-unavailable", request)
    line = service.line_of(lines, valid)
    return redirect(f"/cart?added={line.id}" if line else "/cart", request)


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
