"""Sign-up, login and logout pages, the account page (profile, password, sessions) and its API
keys page: the same services as the JSON API, with cookies."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth import api_keys, service, twofactor
from computebill.auth.browser import (
    Customer,
    CustomerDep,
    LoginIntentDep,
    VisitorDep,
    device_cookie,
    end_browser_session,
    has_recent_login,
    prove_recent_login,
    refresh_cookie,
    start_browser_session,
    verify_csrf,
)
from computebill.auth.dependencies import ClientDep
from computebill.auth.intents import LoginIntent
from computebill.auth.models import Scope, User
from computebill.auth.service import AuthComponents
from computebill.clock import Clock
from computebill.config import Settings
from computebill.deps import AuthDep, ClockDep, SessionDep, SettingsDep
from computebill.errors import AppError
from computebill.ratelimit import RateLimited
from computebill.web.login import safe_next
from computebill.web.rendering import redirect, render

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


def _going(next: str | None, intent: LoginIntent | None) -> dict[str, Any]:
    """Where a login (or a sign-up) goes once it succeeds, and why it is asked for, when a form
    this browser posted sent the visitor to it for that same page."""
    target = safe_next(next)
    reason = intent.reason if intent is not None and intent.next == target else None
    return {"next": target, "reason": reason}


@router.get("/login")
async def login_page(
    request: Request, visitor: VisitorDep, intent: LoginIntentDep, next: str | None = None
) -> Response:
    if visitor.signed_in:
        return redirect(safe_next(next), request)
    context = _going(next, intent) | {"email": "", "error": None}
    return render(request, "login.html", context, visitor=visitor)


@router.post("/login")
async def log_in(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    intent: LoginIntentDep,
    email: EmailForm = "",
    password: PasswordForm = "",
    next: NextForm = "",
) -> Response:
    def again(error: str, status_code: int) -> Response:
        context = _going(next, intent) | {"email": email, "error": error}
        return render(request, "login.html", context, visitor=visitor, status_code=status_code)

    now = clock.now()
    try:
        result = await service.log_in(
            db,
            email=email,
            password=password,
            device_token=device_cookie(request, settings),
            auth=auth,
            settings=settings,
            now=now,
            client=client,
        )
    except (RateLimited, service.InvalidCredentials) as error:
        # The form again, with the reason (InvalidCredentials keeps its audit event either way).
        return again(error.detail, error.status)
    if isinstance(result, service.SecondStepOwed):
        context = _going(next, intent) | {"challenge": result.challenge, "error": None}
        return render(request, "login_code.html", context, visitor=visitor)
    await _end_previous_session(request, db, auth, settings, clock, client)
    start_browser_session(request, result, auth=auth, settings=settings, now=now)
    return redirect(safe_next(next), request)


@router.post("/login/code")
async def complete_login(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    intent: LoginIntentDep,
    challenge: Annotated[str, Form(max_length=256)] = "",
    code: Annotated[str, Form(max_length=32)] = "",
    next: NextForm = "",
) -> Response:
    """The second step of a login with two-factor authentication: the challenge the password
    step gave (a hidden field), and a TOTP or recovery code."""
    now = clock.now()
    try:
        issued = await twofactor.complete_login(
            db,
            challenge=challenge,
            code=code,
            auth=auth,
            settings=settings,
            now=now,
            client=client,
        )
    except twofactor.InvalidChallenge as error:
        context = _going(next, intent) | {"email": "", "error": error.detail}
        return render(request, "login.html", context, visitor=visitor, status_code=error.status)
    except (RateLimited, twofactor.InvalidCode) as error:
        context = _going(next, intent) | {"challenge": challenge, "error": error.detail}
        return render(
            request, "login_code.html", context, visitor=visitor, status_code=error.status
        )
    await _end_previous_session(request, db, auth, settings, clock, client)
    start_browser_session(request, issued, auth=auth, settings=settings, now=now)
    return redirect(safe_next(next), request)


@router.get("/signup")
async def signup_page(
    request: Request, visitor: VisitorDep, intent: LoginIntentDep, next: str | None = None
) -> Response:
    if visitor.signed_in:
        return redirect(safe_next(next), request)
    context = _going(next, intent) | {"email": "", "name": "", "errors": {}}
    return render(request, "signup.html", context, visitor=visitor)


# Which form field each refusal of `service.sign_up` is about.
_SIGNUP_FIELDS: dict[type[Exception], str] = {
    service.InvalidName: "name",
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
    intent: LoginIntentDep,
    email: EmailForm = "",
    password: PasswordForm = "",
    name: Annotated[str, Form(max_length=200)] = "",
    next: NextForm = "",
) -> Response:
    now = clock.now()
    try:
        issued = await service.open_account(
            db,
            email=email,
            password=password,
            name=name or None,
            rate_limiter=auth.rate_limiter,
            crypto=auth.refresh_tokens,
            settings=settings,
            now=now,
            client=client,
        )
    except (
        service.InvalidEmail,
        service.EmailTaken,
        service.InvalidPassword,
        RateLimited,
    ) as error:
        field = _SIGNUP_FIELDS.get(type(error))
        context = _going(next, intent) | {
            "email": email,
            "name": name,
            "errors": {field: error.detail} if field else {},
            "error": None if field else error.detail,
        }
        return render(request, "signup.html", context, visitor=visitor, status_code=error.status)
    await _end_previous_session(request, db, auth, settings, clock, client)
    start_browser_session(request, issued, auth=auth, settings=settings, now=now)
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


# The account page: profile, password and sessions --------------------------------------------

# Order matters: Edge, Opera and Samsung Internet also say "Chrome/"; Chrome also says "Safari/".
_BROWSERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("Edg/", "EdgA/", "EdgiOS/"), "Edge"),
    (("OPR/", "Opera/"), "Opera"),
    (("SamsungBrowser/",), "Samsung Internet"),
    (("Firefox/", "FxiOS/"), "Firefox"),
    (("CriOS/", "Chrome/", "Chromium/"), "Chrome"),
    (("Safari/",), "Safari"),
)
# Order matters: Android says "Linux"; iPhones and iPads say "like Mac OS X".
_SYSTEMS: tuple[tuple[str, str], ...] = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
)
_PRODUCT = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,39}")


def describe_device(user_agent: str) -> str:
    """A user agent as a person reads it: "Chrome on Linux", "Safari on iPhone", "curl"."""
    agent = user_agent.strip()
    if not agent:
        return "Unknown device"
    browser = next(
        (name for markers, name in _BROWSERS if any(marker in agent for marker in markers)), None
    )
    system = next((name for marker, name in _SYSTEMS if marker in agent), None)
    if browser is None:
        product = _PRODUCT.match(agent)
        named = product is not None and product.group(0) != "Mozilla"
        browser = product.group(0) if product is not None and named else "Unknown browser"
    return f"{browser} on {system}" if system else browser


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: uuid.UUID
    device: str
    user_agent: str
    ip_address: str
    created_at: datetime
    last_used_at: datetime
    current: bool


# Notices after a redirect, by a fixed key: no text from the query string reaches the page.
ACCOUNT_NOTICES = {
    "verification-sent": "A new verification link is on its way to your e-mail address.",
    "email-changed": "Your e-mail address was changed. Follow the link we sent to it to verify it.",
    "password-changed": "Your password was changed. Every other session has been signed out.",
    "session-revoked": "The session was signed out.",
    "others-revoked": "Every other session has been signed out.",
    "name-changed": "Your name was saved.",
}


async def _account_page(
    request: Request,
    customer: Customer,
    db: SessionDep,
    clock: ClockDep,
    *,
    notice: str | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    sessions = await service.list_sessions(db, user_id=customer.user_id, now=clock.now())
    rows = [
        SessionRow(
            id=s.id,
            device=describe_device(s.user_agent),
            user_agent=s.user_agent,
            ip_address=s.ip_address,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            current=s.id == customer.session_id,
        )
        for s in sessions
    ]
    rows.sort(key=lambda row: not row.current)  # this device first, then the most recent
    context: dict[str, Any] = {
        "user": customer.visitor.user,
        "sessions": rows,
        "other_sessions": sum(1 for row in rows if not row.current),
        "notice": notice,
        "errors": errors or {},
    }
    return render(
        request, "account.html", context, visitor=customer.visitor, status_code=status_code
    )


@router.get("/account")
async def account_page(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    clock: ClockDep,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return await _account_page(
        request, customer, db, clock, notice=ACCOUNT_NOTICES.get(notice or "")
    )


@router.post("/account/name")
async def change_name(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    clock: ClockDep,
    client: ClientDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The API's name change; an empty name clears it."""
    try:
        await service.rename(
            db, user_id=customer.user_id, name=name, now=clock.now(), client=client
        )
    except service.InvalidName as error:
        return await _account_page(
            request, customer, db, clock, errors={"name": error.detail}, status_code=error.status
        )
    return redirect("/account?notice=name-changed", request)


def _delete_account_page(
    request: Request, customer: Customer, *, error: str | None = None, status_code: int = 200
) -> Response:
    return render(
        request,
        "account_delete.html",
        {"user": customer.visitor.user, "errors": {"password": error} if error else {}},
        visitor=customer.visitor,
        status_code=status_code,
    )


@router.get("/account/delete")
async def delete_account_page(request: Request, customer: CustomerDep) -> Response:
    return _delete_account_page(request, customer)


@router.post("/account/delete")
async def delete_account(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    password: PasswordForm = "",
) -> Response:
    """The API's account deletion, confirmed by the password: every session ends, this one
    too."""
    try:
        await service.delete_account(
            db,
            user_id=customer.user_id,
            password=password,
            revocations=auth.revocations,
            rate_limiter=auth.rate_limiter,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except (service.WrongPassword, service.TooManyWrongPasswords) as error:
        return _delete_account_page(request, customer, error=error.detail, status_code=error.status)
    end_browser_session(request, settings)
    return redirect("/account/deleted", request)


@router.get("/account/deleted")
async def account_deleted_page(request: Request, visitor: VisitorDep) -> Response:
    return render(request, "account_deleted.html", {}, visitor=visitor)


# Which form field each refusal of `service.change_password` is about.
_PASSWORD_FIELDS: dict[type[Exception], str] = {
    service.WrongPassword: "current_password",
    service.TooManyWrongPasswords: "current_password",
    service.InvalidPassword: "new_password",
}


@router.post("/account/password")
async def change_password(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    current_password: PasswordForm = "",
    new_password: PasswordForm = "",
) -> Response:
    """The API's password change: the current session stays, every other one ends."""
    missing = (
        ("current_password", current_password, "Enter your current password."),
        ("new_password", new_password, "Enter a new password."),
    )
    errors = {field: message for field, value, message in missing if not value}
    if errors:
        return await _account_page(request, customer, db, clock, errors=errors, status_code=422)
    try:
        await service.change_password(
            db,
            user_id=customer.user_id,
            session_id=customer.session_id,
            current_password=current_password,
            new_password=new_password,
            revocations=auth.revocations,
            rate_limiter=auth.rate_limiter,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except (service.WrongPassword, service.TooManyWrongPasswords, service.InvalidPassword) as error:
        errors = {_PASSWORD_FIELDS[type(error)]: error.detail}
        return await _account_page(
            request, customer, db, clock, errors=errors, status_code=error.status
        )
    return redirect("/account?notice=password-changed", request)


@router.post("/account/sessions/revoke-others")
async def revoke_other_sessions(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await service.revoke_other_sessions(
        db,
        user_id=customer.user_id,
        keep_session_id=customer.session_id,
        reason=service.EventType.SESSION_REVOKED,
        revocations=auth.revocations,
        now=clock.now(),
        client=client,
    )
    return redirect("/account?notice=others-revoked", request)


@router.post("/account/sessions/{session_id}/revoke")
async def revoke_session(
    request: Request,
    session_id: uuid.UUID,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await service.revoke_session(
        db,
        user_id=customer.user_id,
        session_id=session_id,
        revocations=auth.revocations,
        now=clock.now(),
        client=client,
    )
    if session_id == customer.session_id:  # this browser's own: it is signed out
        end_browser_session(request, settings)
        return redirect("/login", request)
    return redirect("/account?notice=session-revoked", request)


# Two-factor authentication: set up, turn on (recovery codes shown once), turn off -------------

SECURITY_NOTICES = {
    "disabled": "Two-factor authentication is off. Every other session has been signed out.",
}

# Refusals of a form that needs a recent login (`prove_recent_login`), said beside its password
# field.
RECENT_LOGIN_REFUSALS = (
    service.ReauthenticationRequired,
    service.WrongPassword,
    service.TooManyWrongPasswords,
)


def _recent_login_error(refused: AppError) -> str:
    if isinstance(refused, service.ReauthenticationRequired):
        return "Your login is not recent enough for this: enter your password to confirm."
    return refused.detail


def _qr_svg(uri: str) -> Markup:
    """The otpauth URI as a QR code, an inline SVG drawn here: nothing for the CSP to load."""
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff")
    return Markup(svg)  # noqa: S704 - segno's own markup, from our URI


@dataclass(frozen=True, slots=True)
class SecurityPage:
    """The security page of this request's customer, for its handlers to answer with."""

    request: Request
    customer: Customer
    db: AsyncSession
    auth: AuthComponents
    settings: Settings
    clock: Clock

    async def render(
        self,
        *,
        notice: str | None = None,
        error: str | None = None,
        errors: dict[str, str] | None = None,
        recovery_codes: list[str] | None = None,
        user: User | None = None,
        status_code: int = 200,
    ) -> Response:
        """The page; the form that turns two-factor authentication on asks for the password
        when the login is not recent (read now: the answer to a form may just have proved
        it)."""
        user = user or self.customer.visitor.user
        assert user is not None
        setup = twofactor.pending_setup(user, auth=self.auth)
        recent_login = await has_recent_login(self.db, self.customer, self.clock, self.settings)
        context: dict[str, Any] = {
            "user": user,
            "setup": setup,
            "qr_svg": _qr_svg(setup.otpauth_uri) if setup else None,
            "recent_login": recent_login,
            "notice": notice,
            "error": error,
            "errors": errors or {},
            "recovery_codes": recovery_codes,
        }
        return render(
            self.request,
            "account_security.html",
            context,
            visitor=self.customer.visitor,
            status_code=status_code,
        )

    async def refused(self, refusal: AppError, *, field: str | None = None) -> Response:
        """The page again with a refusal: beside `field`, or above the forms."""
        if field is None:
            return await self.render(error=refusal.detail, status_code=refusal.status)
        return await self.render(errors={field: refusal.detail}, status_code=refusal.status)


async def _security_page(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> SecurityPage:
    return SecurityPage(request, customer, db, auth, settings, clock)


SecurityPageDep = Annotated[SecurityPage, Depends(_security_page)]


@router.get("/account/security")
async def security_page(
    page: SecurityPageDep, notice: Annotated[str | None, Query(max_length=40)] = None
) -> Response:
    return await page.render(notice=SECURITY_NOTICES.get(notice or ""))


@router.post("/account/security/setup")
async def begin_two_factor_setup(
    request: Request, page: SecurityPageDep, customer: CustomerDep, db: SessionDep, auth: AuthDep
) -> Response:
    try:
        await twofactor.begin_setup(db, user_id=customer.user_id, auth=auth)
    except twofactor.TwoFactorAlreadyEnabled as error:
        return await page.refused(error)
    return redirect("/account/security", request)


@router.post("/account/security/enable")
async def enable_two_factor(
    page: SecurityPageDep,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    code: Annotated[str, Form(max_length=32)] = "",
    password: PasswordForm = "",
) -> Response:
    """With a recent login (or the password, when the form asks for it): a stolen session
    cannot enrol its own authenticator. The recovery codes are shown on this answer, the once
    they are ever shown."""
    try:
        await prove_recent_login(db, customer, auth, settings, clock, client, password)
        codes = await twofactor.enable(
            db,
            user_id=customer.user_id,
            session_id=customer.session_id,
            code=code,
            auth=auth,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except RECENT_LOGIN_REFUSALS as refused:
        errors = {"password": _recent_login_error(refused)}
        return await page.render(errors=errors, status_code=refused.status)
    except (
        twofactor.InvalidCode,
        twofactor.NoPendingSetup,
        twofactor.TwoFactorAlreadyEnabled,
    ) as error:
        return await page.refused(error)
    return await page.render(
        notice="Two-factor authentication is on. Every other session has been signed out.",
        recovery_codes=codes,
        user=await service.get_active_user(db, customer.user_id),
    )


@router.post("/account/security/disable")
async def disable_two_factor(
    request: Request,
    page: SecurityPageDep,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    password: PasswordForm = "",
    code: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """A refusal is said beside the field it is about: the password's (wrong, or too many
    wrong ones), or the code's (wrong, or too many wrong ones)."""
    try:
        await twofactor.disable(
            db,
            user_id=customer.user_id,
            session_id=customer.session_id,
            password=password,
            code=code,
            auth=auth,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except twofactor.TwoFactorNotEnabled as error:
        return await page.refused(error)
    except (service.WrongPassword, service.TooManyWrongPasswords) as error:
        return await page.refused(error, field="password")
    except (twofactor.InvalidCode, RateLimited) as error:
        return await page.refused(error, field="code")
    return redirect("/account/security?notice=disabled", request)


API_KEYS_PAGE = "/account/api-keys"
API_KEY_NOTICES = {"revoked": "The key is revoked: it is refused from now on."}
API_KEY_SCOPES = [
    (Scope.READ.value, "read everything in the account"),
    (Scope.INSTANCES_WRITE.value, "launch and terminate instances, add and delete SSH keys"),
    (Scope.BILLING_WRITE.value, "cart, checkout, top-ups, cards, auto-recharge, budget"),
]
API_KEY_EXPIRIES = [
    ("", "Never"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
]


async def _api_keys_page(
    request: Request,
    customer: Customer,
    db: SessionDep,
    settings: Settings,
    clock: ClockDep,
    *,
    created: api_keys.CreatedKey | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    """The page; "Create a key" asks for the password when the login is not recent (read now:
    the answer to the form may just have proved it)."""
    context: dict[str, Any] = {
        "keys": await api_keys.list_keys(db, user_id=customer.user_id),
        "created": created,
        "values": values or {"name": "", "scopes": [Scope.READ.value], "expires_in_days": ""},
        "errors": errors or {},
        "notice": notice,
        "now": clock.now(),
        "recent_login": await has_recent_login(db, customer, clock, settings),
        "scope_labels": API_KEY_SCOPES,
        "expiry_choices": API_KEY_EXPIRIES,
    }
    return render(
        request, "api_keys.html", context, visitor=customer.visitor, status_code=status_code
    )


@router.get(API_KEYS_PAGE)
async def api_keys_page(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return await _api_keys_page(
        request, customer, db, settings, clock, notice=API_KEY_NOTICES.get(notice or "")
    )


@router.post(API_KEYS_PAGE)
async def create_api_key(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    name: Annotated[str, Form(max_length=200)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=len(Scope))] = None,
    expires_in_days: Annotated[str, Form(max_length=3)] = "",
    password: PasswordForm = "",
) -> Response:
    """Make the key and show it in this answer, the only place it ever appears. With a recent
    login (or the password, when the form asks for it), as the API: a session alone makes no
    key."""
    scopes = scopes or []
    values = {"name": name, "scopes": scopes, "expires_in_days": expires_in_days}
    chosen = [Scope(scope) for scope in scopes if scope in set(Scope)]
    errors: dict[str, str] = {}
    if not chosen:
        errors["scopes"] = "Choose at least one scope."
    if expires_in_days not in {days for days, _ in API_KEY_EXPIRIES}:
        errors["expires_in_days"] = "Choose when the key expires."
    status_code = 422
    try:
        await prove_recent_login(db, customer, auth, settings, clock, client, password)
    except RECENT_LOGIN_REFUSALS as refused:
        errors["password"] = _recent_login_error(refused)
        status_code = refused.status
    now = clock.now()
    expires_at = now + timedelta(days=int(expires_in_days)) if expires_in_days.isdigit() else None
    if not errors:
        try:
            created = await api_keys.create_key(
                db,
                user_id=customer.user_id,
                name=name,
                scopes=chosen,
                expires_at=expires_at,
                crypto=auth.refresh_tokens,
                now=now,
                client=client,
            )
        except (service.InvalidName, api_keys.TooManyApiKeys) as refused:
            errors["name"] = refused.detail
        else:
            return await _api_keys_page(request, customer, db, settings, clock, created=created)
    return await _api_keys_page(
        request,
        customer,
        db,
        settings,
        clock,
        values=values,
        errors=errors,
        status_code=status_code,
    )


@router.post(f"{API_KEYS_PAGE}/{{key_id}}/revoke")
async def revoke_api_key(
    request: Request,
    key_id: uuid.UUID,
    customer: CustomerDep,
    db: SessionDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await api_keys.revoke_key(
        db, user_id=customer.user_id, key_id=key_id, now=clock.now(), client=client
    )
    return redirect(f"{API_KEYS_PAGE}?notice=revoked", request)


# E-mail verification and password reset --------------------------------------------------------

TokenQuery = Annotated[str, Query(max_length=256)]
TokenForm = Annotated[str, Form(max_length=256)]


@router.get("/verify-email")
async def verify_email_page(
    request: Request, visitor: VisitorDep, token: TokenQuery = ""
) -> Response:
    """The link from the verification e-mail: a button that confirms. Opening the link spends
    nothing, since mail scanners fetch links before their reader does; the POST does."""
    context = {"token": token, "state": "confirm" if token else "invalid"}
    return render(request, "verify_email.html", context, visitor=visitor)


@router.post("/verify-email")
async def verify_email(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    auth: AuthDep,
    clock: ClockDep,
    client: ClientDep,
    token: TokenForm = "",
) -> Response:
    try:
        user = await service.verify_email(
            db, token=token, crypto=auth.refresh_tokens, now=clock.now(), client=client
        )
    except service.InvalidToken as error:
        context = {"token": "", "state": "invalid", "error": error.detail}
        return render(
            request, "verify_email.html", context, visitor=visitor, status_code=error.status
        )
    # The visitor was read before the verification: without this, its banner would still show.
    shown = replace(visitor, user=user) if visitor.user and visitor.user.id == user.id else visitor
    return render(request, "verify_email.html", {"state": "verified"}, visitor=shown)


@router.post("/verify-email/resend")
async def resend_verification(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    try:
        await service.resend_verification(
            db,
            user_id=customer.user_id,
            rate_limiter=auth.rate_limiter,
            crypto=auth.refresh_tokens,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except service.EmailAlreadyVerified:
        return redirect("/account", request)
    return redirect("/account?notice=verification-sent", request)


@router.post("/account/email")
async def change_email(
    request: Request,
    customer: CustomerDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    new_email: EmailForm = "",
    password: PasswordForm = "",
) -> Response:
    """The API's e-mail change: the new address must be verified again."""
    try:
        await service.change_email(
            db,
            user_id=customer.user_id,
            new_email=new_email,
            password=password,
            crypto=auth.refresh_tokens,
            rate_limiter=auth.rate_limiter,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except (
        service.WrongPassword,
        service.TooManyWrongPasswords,
        service.InvalidEmail,
        service.EmailTaken,
        service.EmailUnchanged,
    ) as error:
        password_refused = isinstance(error, service.WrongPassword | service.TooManyWrongPasswords)
        field = "email_password" if password_refused else "new_email"
        return await _account_page(
            request, customer, db, clock, errors={field: error.detail}, status_code=error.status
        )
    return redirect("/account?notice=email-changed", request)


@router.get("/password-reset")
async def password_reset_page(request: Request, visitor: VisitorDep) -> Response:
    context = {"state": "form", "email": "", "error": None}
    return render(request, "password_reset.html", context, visitor=visitor)


@router.post("/password-reset")
async def request_password_reset(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    email: EmailForm = "",
) -> Response:
    """As the API: the same page whether or not an account has the address."""
    try:
        await service.request_password_reset(
            db,
            email=email,
            rate_limiter=auth.rate_limiter,
            crypto=auth.refresh_tokens,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except RateLimited as error:
        context = {"state": "form", "email": email, "error": error.detail}
        return render(
            request, "password_reset.html", context, visitor=visitor, status_code=error.status
        )
    return render(request, "password_reset.html", {"state": "sent"}, visitor=visitor)


@router.get("/password-reset/confirm")
async def password_reset_confirm_page(
    request: Request, visitor: VisitorDep, token: TokenQuery = ""
) -> Response:
    context: dict[str, Any] = {
        "state": "form" if token else "invalid",
        "token": token,
        "errors": {},
    }
    return render(request, "password_reset_confirm.html", context, visitor=visitor)


@router.post("/password-reset/confirm")
async def confirm_password_reset(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    token: TokenForm = "",
    new_password: PasswordForm = "",
) -> Response:
    """As the API; every session of the account ends, this browser's too."""
    try:
        await service.reset_password(
            db,
            token=token,
            new_password=new_password,
            crypto=auth.refresh_tokens,
            revocations=auth.revocations,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    except (service.InvalidToken, service.InvalidPassword) as error:
        invalid = isinstance(error, service.InvalidToken)
        context = {
            "state": "invalid" if invalid else "form",
            "token": token,
            "errors": {} if invalid else {"new_password": error.detail},
            "error": error.detail if invalid else None,
        }
        return render(
            request,
            "password_reset_confirm.html",
            context,
            visitor=visitor,
            status_code=error.status,
        )
    end_browser_session(request, settings)
    signed_out = replace(visitor, principal=None, user=None)
    return render(request, "password_reset_confirm.html", {"state": "done"}, visitor=signed_out)
