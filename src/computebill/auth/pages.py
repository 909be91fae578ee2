"""Sign-up, login and logout pages: the same services as the JSON API, with cookies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from computebill.auth import service
from computebill.auth.dependencies import AuthComponents, AuthDep, ClientDep
from computebill.config import Settings
from computebill.db import SessionDep
from computebill.deps import ClockDep, SettingsDep
from computebill.ratelimit import RateLimited
from computebill.web.session import (
    VisitorDep,
    end_browser_session,
    redirect,
    refresh_cookie,
    render,
    safe_next,
    start_browser_session,
    verify_csrf,
)

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

EmailForm = Annotated[str, Form(max_length=320)]
PasswordForm = Annotated[str, Form(max_length=1024)]  # refused before hashing, as in the API
NextForm = Annotated[str, Form(max_length=2048)]


async def _end_previous_session(
    request: Request,
    db: SessionDep,
    auth: AuthComponents,
    settings: Settings,
    clock: ClockDep,
    client: ClientDep,
) -> None:
    """End the session whose refresh cookie this browser holds (at logout, and before a login
    so that a browser never carries two sessions)."""
    previous = refresh_cookie(request, settings)
    if previous:
        await service.log_out(
            db,
            token=previous,
            crypto=auth.refresh_tokens,
            revocations=auth.revocations,
            now=clock.now(),
            client=client,
        )


@router.get("/login")
async def login_page(request: Request, visitor: VisitorDep, next: str | None = None) -> Response:
    if visitor.signed_in:
        return redirect(safe_next(next), request)
    return render(
        request,
        "login.html",
        {"next": safe_next(next), "email": "", "error": None},
        visitor=visitor,
    )


@router.post("/login")
async def log_in(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    email: EmailForm = "",
    password: PasswordForm = "",
    next: NextForm = "",
) -> Response:
    def again(error: str, status_code: int) -> Response:
        context = {"next": safe_next(next), "email": email, "error": error}
        return render(request, "login.html", context, visitor=visitor, status_code=status_code)

    try:
        issued = await service.log_in(
            db,
            email=email,
            password=password,
            rate_limiter=auth.rate_limiter,
            crypto=auth.refresh_tokens,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except RateLimited as error:
        return again(error.detail, 429)
    if issued is None:
        return again("The e-mail or password is wrong.", 401)
    await _end_previous_session(request, db, auth, settings, clock, client)
    start_browser_session(request, issued, auth=auth, settings=settings)
    return redirect(safe_next(next), request)


@router.get("/signup")
async def signup_page(request: Request, visitor: VisitorDep, next: str | None = None) -> Response:
    if visitor.signed_in:
        return redirect(safe_next(next), request)
    context: dict[str, Any] = {"next": safe_next(next), "email": "", "name": "", "errors": {}}
    return render(request, "signup.html", context, visitor=visitor)


# Which form field each refusal of `service.sign_up` is about.
_SIGNUP_FIELDS: dict[type[Exception], str] = {
    service.InvalidEmail: "email",
    service.EmailTaken: "email",
    service.InvalidPassword: "password",
}


@router.post("/signup")
async def sign_up(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    email: EmailForm = "",
    password: PasswordForm = "",
    name: Annotated[str, Form(max_length=200)] = "",
    next: NextForm = "",
) -> Response:
    try:
        issued = await service.open_account(
            db,
            email=email,
            password=password,
            name=name or None,
            rate_limiter=auth.rate_limiter,
            crypto=auth.refresh_tokens,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except (
        service.InvalidEmail,
        service.EmailTaken,
        service.InvalidPassword,
        RateLimited,
    ) as error:
        field = _SIGNUP_FIELDS.get(type(error))
        context = {
            "next": safe_next(next),
            "email": email,
            "name": name,
            "errors": {field: error.detail} if field else {},
            "error": None if field else error.detail,
        }
        return render(request, "signup.html", context, visitor=visitor, status_code=error.status)
    await _end_previous_session(request, db, auth, settings, clock, client)
    start_browser_session(request, issued, auth=auth, settings=settings)
    return redirect(safe_next(next), request)


@router.post("/logout")
async def log_out(
    request: Request,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await _end_previous_session(request, db, auth, settings, clock, client)
    end_browser_session(request, settings)
    return redirect("/", request)
