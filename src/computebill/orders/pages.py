"""The customer's order history and order pages: the same services as the JSON API."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from computebill.auth.browser import CustomerDep
from computebill.deps import ClockDep, SessionDep
from computebill.errors import NotFound
from computebill.instances.service import list_instances
from computebill.orders import service
from computebill.web.csrf import verify_csrf
from computebill.web.rendering import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

PAGE_SIZE = 20


@router.get("/account/orders")
async def order_history(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The user's orders, newest first, a page at a time (the API's cursor)."""
    page = await service.order_page(db, user_id=customer.user_id, limit=PAGE_SIZE, cursor=cursor)
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
    detail = await service.get_order(db, user_id=customer.user_id, order_id=wanted)
    order = detail.order
    context = {
        "order": order,
        "lines": detail.lines,
        "history": detail.history,
        "refunds": detail.refunds,
        "instances": await list_instances(db, user_id=customer.user_id, order_id=order.id),
        # The receipt the e-mail carries, once the order is paid.
        "receipt": await service.receipt(db, order.id) if order.paid_at is not None else None,
        "pay_url": service.open_checkout_url(order, now=clock.now()),
    }
    return render(request, "account_order.html", context, visitor=customer.visitor)
