"""Browsers signed in by cookie: the session cookies, their transparent refresh, and the visitor
every page is rendered for.

The access and refresh tokens live in the cookies `computebill.web.cookies` names. An expired or
missing access token is replaced from the refresh cookie with the same rotation the JSON API uses;
a revoked session or a disabled user signs the browser out.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import Depends, Form, Request
from fastapi.responses import Response

from computebill.auth import service as auth_service
from computebill.auth.dependencies import ADMIN, STAFF, ClientDep, Principal, ensure_role
from computebill.auth.intents import LoginIntent
from computebill.auth.models import User
from computebill.auth.service import AuthComponents
from computebill.auth.tokens import InvalidAccessToken
from computebill.config import Settings
from computebill.deps import (
    AuthDep,
    CartCounterDep,
    ClockDep,
    HeaderMoneyDep,
    SessionDep,
    SettingsDep,
)
from computebill.web.cookies import CookieJar, cookie_jar, cookie_policy, session_max_age
from computebill.web.csrf import SAFE_METHODS, check_csrf, csrf_token, renew_csrf_token
from computebill.web.login import LoginRequired, login_url, safe_next
from computebill.web.rendering import redirect

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who a page is for: a signed-in user (with the header's cart count, balance and whether
    the credit cap stopped their instances) or an anonymous one."""

    principal: Principal | None
    user: User | None
    cart_count: int
    csrf_token: str
    balance_cents: int | None = None  # None: nobody is signed in
    credit_stopped: bool = False

    @property
    def signed_in(self) -> bool:
        return self.principal is not None


def _set_session_cookies(
    request: Request, issued: auth_service.Issued, *, auth: AuthComponents, settings: Settings
) -> None:
    jar: CookieJar = cookie_jar(request, settings)
    access = auth.access_tokens.issue(user_id=issued.account.id, session_id=issued.session_id)
    jar.set(jar.policy.access, access, max_age=settings.access_token_ttl_seconds)
    jar.set(jar.policy.refresh, issued.refresh_token, max_age=session_max_age(settings))


def start_browser_session(
    request: Request,
    issued: auth_service.Issued,
    *,
    auth: AuthComponents,
    settings: Settings,
    now: datetime,
) -> None:
    """Set fresh access, refresh and CSRF cookies: the cookies a browser had before signing in
    (another account's included) are all replaced, so no session can be fixed in advance, and
    the CSRF token from before signing in is no longer good. The device cookie marks the browser
    as one the account signed in from (it outlives logout)."""
    _set_session_cookies(request, issued, auth=auth, settings=settings)
    renew_csrf_token(request, settings, issued.session_id)
    jar = cookie_jar(request, settings)
    device = auth.devices.issue(issued.account.id, now=now)
    jar.set(jar.policy.device, device, max_age=int(auth.devices.lifetime.total_seconds()))


def device_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(cookie_policy(settings).device)


def end_browser_session(request: Request, settings: Settings) -> None:
    jar = cookie_jar(request, settings)
    jar.delete(jar.policy.access)
    jar.delete(jar.policy.refresh)


def refresh_cookie(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(cookie_policy(settings).refresh)


@dataclass(frozen=True, slots=True)
class LoginFirst:
    """Sends a signed-out visitor to log in, remembering why (the login and sign-up pages say
    "Log in to <reason>") and, in `details`, what the page at `next` is to finish once they
    have. Only for a form post: its CSRF check is what makes the intent this visitor's."""

    request: Request
    auth: AuthComponents
    settings: Settings
    now: datetime

    def __call__(
        self, *, next: str, reason: str, details: dict[str, Any] | None = None
    ) -> Response:
        target = safe_next(next)
        intents = self.auth.intents
        intent = intents.new(next=target, reason=reason, details=details)
        jar = cookie_jar(self.request, self.settings)
        lifetime = int(intents.lifetime.total_seconds())
        jar.set(jar.policy.intent, intents.seal(intent, now=self.now), max_age=lifetime)
        return redirect(login_url(target), self.request)


async def _login_first(
    request: Request, auth: AuthDep, settings: SettingsDep, clock: ClockDep
) -> LoginFirst:
    return LoginFirst(request, auth, settings, clock.now())


LoginFirstDep = Annotated[LoginFirst, Depends(_login_first)]


async def _login_intent(
    request: Request, auth: AuthDep, settings: SettingsDep, clock: ClockDep
) -> LoginIntent | None:
    return auth.intents.open(request.cookies.get(cookie_policy(settings).intent), now=clock.now())


# The intent this browser holds (signed, not too old), whichever page it is for.
LoginIntentDep = Annotated[LoginIntent | None, Depends(_login_intent)]


async def take_login_intent(
    request: Request,
    intent: LoginIntent | None,
    *,
    auth: AuthComponents,
    settings: Settings,
    next: str,
) -> LoginIntent | None:
    """The intent to finish at `next`, once: the browser's cookie is deleted and the intent
    marked spent, so a reload, or the same cookie presented again, finishes nothing."""
    if intent is not None and intent.next != next:
        return None  # another page's, left for it
    jar = cookie_jar(request, settings)
    if request.cookies.get(jar.policy.intent):
        jar.delete(jar.policy.intent)  # spent, or not one of ours
    if intent is None or not await auth.intents.spend(intent):
        return None
    return intent


async def _principal_from_cookies(
    request: Request,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Principal | None:
    jar = cookie_jar(request, settings)
    access = request.cookies.get(jar.policy.access)
    if access:
        try:
            claims = auth.access_tokens.verify(access)
        except InvalidAccessToken:
            claims = None
        if claims is not None and not await auth.revocations.refuses(
            db, session_id=claims.session_id, user_id=claims.user_id
        ):
            return Principal(user_id=claims.user_id, session_id=claims.session_id)
    refresh = request.cookies.get(jar.policy.refresh)
    if not refresh:
        return None
    # The access token expired (or its session ended): rotate the refresh token, as the API's
    # /auth/refresh does. Parallel requests with the same cookie get the same child (grace).
    result = await auth_service.rotate_refresh_token(
        db,
        token=refresh,
        crypto=auth.refresh_tokens,
        revocations=auth.revocations,
        rate_limiter=auth.rate_limiter,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    if not isinstance(result, auth_service.Issued):
        log.info("browser_session_ended", reason=result.reason.value)
        end_browser_session(request, settings)
        return None
    _set_session_cookies(request, result, auth=auth, settings=settings)
    return Principal(user_id=result.account.id, session_id=result.session_id)


async def _signed_in_user(
    request: Request, db: SessionDep, settings: Settings, principal: Principal | None
) -> User | None:
    """The active user behind a valid session."""
    if principal is None:
        return None
    user = await auth_service.get_active_user(db, principal.user_id)
    if user is None:
        end_browser_session(request, settings)
        return None
    # Detached, so a rollback (a page ending in an AppError) cannot expire what the error page
    # reads from it.
    db.expunge(user)
    return user


async def _visitor(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    count_cart: CartCounterDep,
    read_money: HeaderMoneyDep,
    clock: ClockDep,
    principal: Annotated[Principal | None, Depends(_principal_from_cookies)],
) -> Visitor:
    user = await _signed_in_user(request, db, settings, principal)
    if user is None or principal is None:
        token = csrf_token(request, settings, None)
        visitor = Visitor(principal=None, user=None, cart_count=0, csrf_token=token)
    else:
        token = csrf_token(request, settings, principal.session_id)
        money = await read_money(db, user.id, clock.now())
        visitor = Visitor(
            principal=principal,
            user=user,
            cart_count=await count_cart(db, user.id),
            csrf_token=token,
            balance_cents=money.balance_cents,
            credit_stopped=money.credit_stopped,
        )
    request.state.visitor = visitor  # for the error page this request may end with
    return visitor


VisitorDep = Annotated[Visitor, Depends(_visitor)]


async def verify_csrf(
    request: Request,
    settings: SettingsDep,
    principal: Annotated[Principal | None, Depends(_principal_from_cookies)],
) -> None:
    """For every unsafe request to a page: same-site, and the CSRF token is the cookie's and
    signed for this browser's session. Mounted on the page routers, so no page route can forget
    it."""
    await check_csrf(request, settings, principal.session_id if principal else None)


@dataclass(frozen=True, slots=True)
class Customer:
    """A signed-in visitor, for pages that need one."""

    visitor: Visitor
    user_id: uuid.UUID
    session_id: uuid.UUID


async def _customer(request: Request, visitor: VisitorDep) -> Customer:
    if visitor.principal is None:
        path = request.url.path
        if request.url.query and request.method in SAFE_METHODS:
            path += "?" + request.url.query
        raise LoginRequired(path if request.method in SAFE_METHODS else "/")
    return Customer(
        visitor=visitor,
        user_id=visitor.principal.user_id,
        session_id=visitor.principal.session_id,
    )


CustomerDep = Annotated[Customer, Depends(_customer)]


async def _staff_customer(customer: CustomerDep, db: SessionDep, settings: SettingsDep) -> Customer:
    await ensure_role(db, customer.user_id, STAFF, settings=settings)
    return customer


async def _admin_customer(customer: CustomerDep, db: SessionDep, settings: SettingsDep) -> Customer:
    await ensure_role(db, customer.user_id, ADMIN, settings=settings)
    return customer


# The console's pages: anonymous visitors go to the login page; signed-in users without the role
# (or, while `REQUIRE_ADMIN_2FA` is on, without two-factor authentication) get a 403.
StaffCustomer = Annotated[Customer, Depends(_staff_customer)]
AdminCustomer = Annotated[Customer, Depends(_admin_customer)]


async def has_recent_login(
    db: SessionDep, customer: CustomerDep, clock: ClockDep, settings: SettingsDep
) -> bool:
    """Whether this browser's session logged in (or re-entered the password) lately: a console
    form for a destructive action asks for the password only when it did not."""
    return await auth_service.has_recent_login(
        db, customer.session_id, now=clock.now(), settings=settings
    )


RecentLoginDep = Annotated[bool, Depends(has_recent_login)]


async def prove_recent_login(
    db: SessionDep,
    customer: Customer,
    auth: AuthComponents,
    settings: Settings,
    clock: ClockDep,
    client: ClientDep,
    password: str,
) -> None:
    """A form that needs a recent login (an admin's destructive action; turning two-factor
    authentication on; making an API key): the session logged in lately, or the form's
    `password` proves it again now (counted with the login's failures). Otherwise 403
    `reauthentication_required`, 403 `wrong_password`, or 429 past the failures' limit."""
    if password:
        await auth_service.reauthenticate(
            db,
            user_id=customer.user_id,
            session_id=customer.session_id,
            password=password,
            rate_limiter=auth.rate_limiter,
            settings=settings,
            now=clock.now(),
            client=client,
        )
    elif not await auth_service.has_recent_login(
        db, customer.session_id, now=clock.now(), settings=settings
    ):
        minutes = settings.reauthenticate_after_seconds // 60
        raise auth_service.ReauthenticationRequired(
            f"You logged in more than {minutes} minutes ago: go back to the form and enter "
            "your password with it."
        )


async def confirm_recent_login(
    db: SessionDep,
    customer: AdminCustomer,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
    password: Annotated[str, Form(max_length=1024)] = "",
) -> Customer:
    """An admin's destructive form, with the recent login `prove_recent_login` asks."""
    await prove_recent_login(db, customer, auth, settings, clock, client, password)
    return customer


# An admin allowed a destructive action from a page: refunds, credit adjustments, price changes,
# force-stops, replays. The form carries `recent_login_field(recent_login)`.
AdminWithRecentLogin = Annotated[Customer, Depends(confirm_recent_login)]
