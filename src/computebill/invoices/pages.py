"""Paperwork's pages: an invoice in the browser (and its PDF), a statement's PDF and CSV, and the
billing profile's form. The same services as the API; the billing page lists them."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from computebill.auth.browser import Customer, CustomerDep, verify_csrf
from computebill.deps import ReadConnectionDep, SessionDep
from computebill.invoices import service
from computebill.invoices.api import invoice_pdf_file, statement_file
from computebill.invoices.schemas import BillingProfileIn
from computebill.paging import PageCursor
from computebill.web.rendering import redirect, render

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

PROFILE_FIELDS = (
    ("name", "Name", True),
    ("company", "Company", False),
    ("address_line1", "Address", True),
    ("address_line2", "Address (line 2)", False),
    ("city", "City", True),
    ("postal_code", "Postal code", True),
    ("country", "Country (2-letter code, e.g. US)", True),
    ("tax_id", "Tax ID (VAT, GST…)", False),
)


INVOICES_PAGE_SIZE = 25


@router.get("/billing/invoices", response_class=HTMLResponse)
async def invoices_list_page(
    request: Request, customer: CustomerDep, db: ReadConnectionDep, cursor: PageCursor = None
) -> HTMLResponse:
    """Every invoice of the customer's, newest first, a page at a time."""
    invoices, next_cursor = await service.invoices_page(
        db, customer.user_id, cursor=cursor, limit=INVOICES_PAGE_SIZE
    )
    context = {"invoices": invoices, "next_cursor": next_cursor, "first_page": cursor is None}
    return render(request, "billing_invoices.html", context, visitor=customer.visitor)


@router.get("/billing/invoices/{invoice_id}.pdf")
async def invoice_pdf_page(
    invoice_id: uuid.UUID, customer: CustomerDep, db: SessionDep
) -> Response:
    return await invoice_pdf_file(db, invoice_id, customer.user_id)


@router.get("/billing/invoices/{invoice_id}", response_class=HTMLResponse)
async def invoice_page(
    request: Request, invoice_id: uuid.UUID, customer: CustomerDep, db: SessionDep
) -> HTMLResponse:
    detail = await service.get_invoice(db, invoice_id, user_id=customer.user_id)
    invoice = detail.invoice
    context = {
        "invoice": invoice,
        "lines": detail.lines,
        "seller_address": invoice.seller_address.splitlines(),
        "buyer_address": invoice.buyer_address.splitlines(),
    }
    return render(request, "invoice.html", context, visitor=customer.visitor)


@router.get("/billing/statements/{statement_id}.{extension}")
async def statement_file_page(
    statement_id: uuid.UUID,
    extension: Literal["pdf", "csv"],
    customer: CustomerDep,
    db: SessionDep,
) -> Response:
    return await statement_file(db, statement_id, customer.user_id, extension)


async def _profile_page(
    request: Request,
    customer: Customer,
    values: dict[str, Any],
    *,
    errors: dict[str, str] | None = None,
    saved: bool = False,
) -> HTMLResponse:
    context = {
        "fields": PROFILE_FIELDS,
        "values": values,
        "errors": errors or {},
        "saved": saved,
    }
    return render(
        request,
        "billing_profile.html",
        context,
        visitor=customer.visitor,
        status_code=422 if errors else 200,
    )


@router.get("/account/billing-profile/summary", response_class=HTMLResponse)
async def billing_profile_summary(
    request: Request, customer: CustomerDep, db: SessionDep
) -> HTMLResponse:
    """The profile as the account page's card shows it (the card loads it)."""
    profile = await service.billing_profile(db, customer.user_id)
    context = {
        "profile": profile,
        "address": service.address_lines(profile) if profile is not None else [],
    }
    return render(request, "_billing_profile_summary.html", context, visitor=customer.visitor)


@router.get("/account/billing-profile", response_class=HTMLResponse)
async def billing_profile_page(
    request: Request, customer: CustomerDep, db: SessionDep, saved: bool = False
) -> HTMLResponse:
    profile = await service.billing_profile(db, customer.user_id)
    values = {
        name: (getattr(profile, name) or "") if profile is not None else ""
        for name, _, _ in PROFILE_FIELDS
    }
    return await _profile_page(request, customer, values, saved=saved)


@router.post("/account/billing-profile", response_model=None)
async def save_billing_profile(request: Request, customer: CustomerDep, db: SessionDep) -> Response:
    form = await request.form()
    values = {name: str(form.get(name, "")) for name, _, _ in PROFILE_FIELDS}
    try:
        profile = BillingProfileIn.model_validate(values)
    except ValidationError as error:
        errors = {
            str(problem["loc"][0]): problem["msg"].removeprefix("Value error, ")
            for problem in error.errors()
        }
        return await _profile_page(request, customer, values, errors=errors)
    await service.save_billing_profile(db, customer.user_id, profile.fields())
    return redirect("/account/billing-profile?saved=true", request)
