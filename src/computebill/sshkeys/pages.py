"""The account's SSH keys page: add (name and the pasted key) and delete."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from computebill.auth.browser import Customer, CustomerDep, verify_csrf
from computebill.deps import SessionDep
from computebill.errors import AppError
from computebill.sshkeys import service
from computebill.sshkeys.schemas import SshKeyIn
from computebill.web.rendering import redirect, render

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

PAGE = "/account/ssh-keys"
NOTICES = {"added": "The key is added.", "deleted": "The key is deleted."}
FormText = Annotated[str, Form(max_length=20_000)]


async def _page(
    request: Request,
    customer: Customer,
    db: SessionDep,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context: dict[str, Any] = {
        "keys": await service.list_keys(db, user_id=customer.user_id),
        "values": values or {"name": "", "public_key": ""},
        "errors": errors or {},
        "notice": NOTICES.get(notice or ""),
        "max_keys": service.MAX_KEYS_PER_ACCOUNT,
    }
    return render(
        request, "ssh_keys.html", context, visitor=customer.visitor, status_code=status_code
    )


@router.get(PAGE, response_class=HTMLResponse)
async def ssh_keys_page(
    request: Request, customer: CustomerDep, db: SessionDep, notice: str | None = None
) -> HTMLResponse:
    return await _page(request, customer, db, notice=notice)


@router.post(PAGE, response_model=None)
async def add_ssh_key(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    name: FormText = "",
    public_key: FormText = "",
) -> Response:
    values = {"name": name, "public_key": public_key}
    try:
        body = SshKeyIn.model_validate(values)
    except ValidationError as error:
        errors = {str(problem["loc"][0]): _field_message(problem) for problem in error.errors()}
        return await _page(request, customer, db, values=values, errors=errors, status_code=422)
    try:
        await service.add_key(
            db, user_id=customer.user_id, name=body.name.strip(), text=body.public_key
        )
    except AppError as refused:
        errors = {"public_key": refused.detail}
        return await _page(
            request, customer, db, values=values, errors=errors, status_code=refused.status
        )
    return redirect(f"{PAGE}?notice=added", request)


def _field_message(problem: Any) -> str:
    if problem["loc"][0] == "name":
        return "Give the key a name of 1 to 80 characters, on one line."
    return "Paste one public key."


@router.post(f"{PAGE}/{{key_id}}/delete", response_model=None)
async def delete_ssh_key(
    request: Request, key_id: uuid.UUID, customer: CustomerDep, db: SessionDep
) -> Response:
    await service.delete_key(db, user_id=customer.user_id, key_id=key_id)
    return redirect(f"{PAGE}?notice=deleted", request)
