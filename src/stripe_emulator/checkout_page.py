"""The hosted checkout page at `session.url`: plain HTML forms, no JavaScript needed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from stripe_emulator import checkout, payments
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError
from stripe_emulator.money import format_amount
from stripe_emulator.payments import PaymentFormError, PaymentResult
from stripe_emulator.store import JSON

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["money"] = format_amount
router = APIRouter(include_in_schema=False)


def _emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


def _fixed_email(emulator: Emulator, session: JSON) -> str | None:
    """The e-mail Stripe shows read-only: `customer_email`, else the customer's."""
    if session["customer_email"]:
        return str(session["customer_email"])
    if session["customer"]:
        customer = emulator.store.find(session["customer"], "customer")
        if customer is not None and customer.data["email"]:
            return str(customer.data["email"])
    return None


def _shown_line_items(emulator: Emulator, session_id: str) -> list[JSON]:
    """The session's line items, each with its product's description, which Stripe's page shows
    under the product's name."""
    shown = []
    for item in checkout.line_items(emulator, session_id):
        product = emulator.store.find(item["price"]["product"], "product")
        described = product.data["description"] if product is not None else None
        shown.append({**item, "product_description": described})
    return shown


def _render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def _page(
    request: Request,
    session_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    field: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    emulator = _emulator(request)
    stored = emulator.store.find(session_id, "checkout.session")
    if stored is None:
        return _render(request, "missing.html", status_code=404)
    session = stored.data
    return _render(
        request,
        "checkout.html",
        status_code=status_code,
        session=session,
        line_items=_shown_line_items(emulator, session_id),
        fixed_email=_fixed_email(emulator, session),
        error=error,
        field=field,
        form=form or {},
    )


def success_redirect(session: JSON) -> RedirectResponse:
    url = str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])
    return RedirectResponse(url, status_code=303)


def _after_payment(request: Request, session_id: str, result: PaymentResult) -> Response:
    if result.status == "requires_action":
        return RedirectResponse(f"/c/pay/{session_id}/authenticate", status_code=303)
    if result.status == "declined":
        return _page(request, session_id, status_code=402, error=result.message)
    session = _emulator(request).load("checkout.session", session_id, param="session").data
    return success_redirect(session)


@router.get("/c/pay/{session_id}")
async def show_checkout(request: Request, session_id: str) -> HTMLResponse:
    return _page(request, session_id)


@router.post("/c/pay/{session_id}")
async def submit_checkout(request: Request, session_id: str) -> Response:
    emulator = _emulator(request)
    form = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    stored = emulator.store.find(session_id, "checkout.session")
    if stored is None or stored.data["status"] != "open":
        return _page(request, session_id, status_code=409 if stored else 404)
    try:
        email = payments.parse_email(form, _fixed_email(emulator, stored.data))
        if form.get("paymentMethod") == "us_bank_account":
            account = payments.parse_bank_account(form, email)
            result = payments.pay_with_bank_account(emulator, session_id, account, Cause())
        else:
            card = payments.parse_card(form, email, dt.datetime.now(dt.UTC).date())
            result = payments.pay_with_card(emulator, session_id, card, Cause())
    except PaymentFormError as refused:
        return _page(
            request,
            session_id,
            status_code=400,
            error=refused.message,
            field=refused.field,
            form=form,
        )
    except StripeError as error:
        return _page(request, session_id, status_code=409, error=error.message)
    return _after_payment(request, session_id, result)


@router.get("/c/pay/{session_id}/authenticate")
async def show_authentication(request: Request, session_id: str) -> HTMLResponse:
    stored = _emulator(request).store.find(session_id, "checkout.session")
    if stored is None or "awaiting_authentication" not in stored.internal:
        return _page(request, session_id, status_code=409 if stored else 404)
    return _render(request, "authenticate.html", session=stored.data)


@router.post("/c/pay/{session_id}/authenticate")
async def submit_authentication(request: Request, session_id: str) -> Response:
    form = await request.form()
    try:
        result = payments.finish_authentication(
            _emulator(request),
            session_id,
            authenticated=form.get("outcome") == "complete",
            cause=Cause(),
        )
    except StripeError as error:
        return _page(request, session_id, status_code=409, error=error.message)
    return _after_payment(request, session_id, result)
