"""The operator's console as pages (`/admin/…`), in the site's look: the same services as the
JSON API under `/api/v1/admin`, the role checked on the server for every page and form."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from computebill.audit.service import audit_page
from computebill.auth import service as accounts
from computebill.auth.browser import (
    AdminCustomer,
    Customer,
    RecentLoginDep,
    StaffCustomer,
    confirm_recent_login,
    verify_csrf,
)
from computebill.auth.dependencies import ClientDep
from computebill.auth.service import Role
from computebill.console import service
from computebill.console.api import queue_depth
from computebill.console.schemas import overview_out
from computebill.credits.schemas import MAX_ADMIN_CREDIT_CENTS, AdminCreditIn
from computebill.credits.service import InvalidCreditRequest, post_audited_admin_credit
from computebill.deps import (
    AuthDep,
    ClockDep,
    PublisherDep,
    ReportConnectionDep,
    SessionDep,
    SettingsDep,
)
from computebill.instances.service import usage
from computebill.money import cents_from_text, format_money
from computebill.paging import PageCursor
from computebill.web.rendering import redirect, render

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

AUDIT_PAGE_SIZE = 50
CUSTOMERS_LISTED = 20
NOTICES = {
    "revoked": "Every session of the customer is ended.",
    "credited": "The credit is posted.",
}
FormText = Annotated[str, Form(max_length=1000)]


def has_control_characters(typed: str) -> bool:
    """PostgreSQL text cannot hold a NUL: a search or filter with control characters is
    refused before it reaches the database."""
    return any(ord(c) < 32 for c in typed)


def gpu_hours(gpu_seconds: int) -> str:
    """GPU-seconds as hours to a tenth, rounded down: `5400` → `1.5`."""
    tenths = gpu_seconds * 10 // 3600
    return f"{tenths // 10:,}.{tenths % 10}"


@router.get("/admin", response_class=HTMLResponse)
async def overview_page(
    request: Request,
    staff: StaffCustomer,
    db: ReportConnectionDep,
    clock: ClockDep,
    publisher: PublisherDep,
) -> HTMLResponse:
    figures = await service.overview(db, now=clock.now())
    context = {
        "overview": overview_out(figures, await queue_depth(publisher)),
        "gpu_hours": gpu_hours,
    }
    return render(request, "admin_overview.html", context, visitor=staff.visitor)


@router.get("/admin/customers", response_class=HTMLResponse)
async def customers_page(
    request: Request,
    staff: StaffCustomer,
    db: SessionDep,
    q: Annotated[str, Query(max_length=320)] = "",
) -> HTMLResponse:
    error = None
    found = []
    if has_control_characters(q):
        error = "Type an id, an address or a name."
    elif q.strip():
        found = await accounts.search_accounts(db, q, limit=CUSTOMERS_LISTED)
    context = {"q": q, "customers": found, "error": error}
    return render(
        request,
        "admin_customers.html",
        context,
        visitor=staff.visitor,
        status_code=422 if error else 200,
    )


async def _customer_page(
    request: Request,
    operator: Customer,
    db: SessionDep,
    user_id: uuid.UUID,
    *,
    now: datetime,
    recent_login: bool,
    notice: str | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    view = await service.customer_view(db, user_id, now=now)
    assert operator.visitor.user is not None  # a signed-in operator
    context: dict[str, Any] = {
        "view": view,
        "usages": [usage(instance, now=now) for instance in view.instances],
        "is_admin": operator.visitor.user.role == Role.ADMIN,
        "recent_login": recent_login,
        "notice": NOTICES.get(notice or ""),
        "values": values or {"kind": "adjustment", "amount": "", "reason": ""},
        "errors": errors or {},
    }
    return render(
        request,
        "admin_customer.html",
        context,
        visitor=operator.visitor,
        status_code=status_code,
    )


@router.get("/admin/customers/{user_id}", response_class=HTMLResponse)
async def customer_page(
    request: Request,
    user_id: uuid.UUID,
    staff: StaffCustomer,
    db: SessionDep,
    clock: ClockDep,
    recent_login: RecentLoginDep,
    notice: str | None = None,
) -> HTMLResponse:
    return await _customer_page(
        request, staff, db, user_id, now=clock.now(), recent_login=recent_login, notice=notice
    )


@router.post("/admin/customers/{user_id}/sessions/revoke", response_model=None)
async def revoke_sessions(
    request: Request,
    user_id: uuid.UUID,
    staff: StaffCustomer,
    db: SessionDep,
    auth: AuthDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await service.revoke_customer_sessions(
        db,
        user_id,
        operator_id=staff.user_id,
        revocations=auth.revocations,
        client=client,
        now=clock.now(),
    )
    return redirect(f"/admin/customers/{user_id}?notice=revoked", request)


def signed_cents(typed: str) -> int | None:
    """A signed amount in dollars and cents, exactly: `"-12.5"` → `-1250`; None when it is
    not an amount."""
    text = typed.strip()
    negative = text.startswith("-")
    cents = cents_from_text(text[1:] if negative else text)
    if cents is None:
        return None
    return -cents if negative else cents


OUT_OF_RANGE = f"At most {format_money(MAX_ADMIN_CREDIT_CENTS)} either way."
# The credit form's fields by the API body's (a refusal names the body's field).
_FORM_FIELDS = {"amount_cents": "amount", "reason": "reason", "kind": "kind"}


@router.post("/admin/customers/{user_id}/credits", response_model=None)
async def post_credit(
    request: Request,
    user_id: uuid.UUID,
    admin: AdminCustomer,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    kind: FormText = "adjustment",
    amount: FormText = "",
    reason: FormText = "",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """An admin's grant or adjustment, as `POST /api/v1/admin/customers/{id}/credits`: the same
    checks, posting and audit entry, and the recent-login rule of `AdminWithRecentLogin`,
    whose refusals come back beside the form's password field."""
    values = {"kind": kind, "amount": amount, "reason": reason}
    errors: dict[str, str] = {}
    body: AdminCreditIn | None = None
    amount_cents = signed_cents(amount)
    if amount_cents is None:
        errors["amount"] = "Type an amount in dollars and cents, like 25.00 or -4.50."
    else:
        try:
            body = AdminCreditIn.model_validate(
                {"amount_cents": amount_cents, "kind": kind, "reason": reason}
            )
        except ValidationError as error:
            for problem in error.errors():
                field = _FORM_FIELDS.get(str(problem["loc"][0]), "amount")
                errors[field] = OUT_OF_RANGE if field == "amount" else problem["msg"]
    status_code = 422
    if body is not None:
        try:
            await confirm_recent_login(db, admin, auth, settings, clock, client, password)
            await post_audited_admin_credit(
                db,
                user_id,
                admin_user_id=admin.user_id,
                client=client,
                kind=body.kind,
                amount_cents=body.amount_cents,
                reason=body.reason,
                expires_at=None,
                request_key=None,
                now=clock.now(),
            )
        except InvalidCreditRequest as refused:
            field = str(refused.errors[0]["field"]).removeprefix("body.") if refused.errors else ""
            errors[_FORM_FIELDS.get(field, "amount")] = refused.detail
        except (accounts.ReauthenticationRequired, accounts.WrongPassword) as refused:
            status_code = refused.status
            errors["password"] = (
                "Wrong password."
                if isinstance(refused, accounts.WrongPassword)
                else "Enter your password to confirm."
            )
        else:
            return redirect(f"/admin/customers/{user_id}?notice=credited", request)
    recent_login = await accounts.has_recent_login(
        db, admin.session_id, now=clock.now(), settings=settings
    )
    return await _customer_page(
        request,
        admin,
        db,
        user_id,
        now=clock.now(),
        recent_login=recent_login,
        values=values,
        errors=errors,
        status_code=status_code,
    )


@router.get("/admin/audit", response_class=HTMLResponse)
async def audit_log_page(
    request: Request,
    staff: StaffCustomer,
    db: ReportConnectionDep,
    actor: Annotated[str, Query(max_length=320)] = "",
    action: Annotated[str, Query(max_length=60)] = "",
    cursor: PageCursor = None,
) -> HTMLResponse:
    filters = {"actor": actor, "action": action}
    if has_control_characters(actor + action):
        context: dict[str, Any] = {
            "entries": [],
            "next_cursor": None,
            "filters": filters,
            "error": "A filter cannot hold control characters.",
        }
        return render(request, "admin_audit.html", context, visitor=staff.visitor, status_code=422)
    entries, next_cursor = await audit_page(
        db,
        actor=actor.strip() or None,
        action=action.strip() or None,
        limit=AUDIT_PAGE_SIZE,
        cursor=cursor,
    )
    context = {
        "entries": entries,
        "next_cursor": next_cursor,
        "filters": filters,
        "query": {name: value for name, value in filters.items() if value},
        "shown": shown_state,
        "error": None,
    }
    return render(request, "admin_audit.html", context, visitor=staff.visitor)


def shown_state(state: dict[str, Any] | None) -> str:
    """An entry's before or after as indented JSON (the page escapes it)."""
    return "" if state is None else json.dumps(state, indent=2, sort_keys=True, ensure_ascii=False)
