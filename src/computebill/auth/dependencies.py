"""Who is calling: the Bearer access token of a session, or an API key, and what it may do.

Every JSON route that needs a caller says so with one of these aliases (docs/architecture.md
§8, "API keys and scopes"), and the app writes what each asks into the OpenAPI schema as
`x-required-scope`:

- `CurrentPrincipal` (and `CurrentAdmin`, and those `…WithRecentLogin`): a signed-in session
  only; an API key is refused with 403 `api_key_not_allowed`. Key management, password, account
  and session changes, admin.
- `ReadAccess`, `InstancesWriteAccess`, `BillingWriteAccess`: a session, or an API key holding
  that scope (403 `insufficient_scope` otherwise).

A route that names none of them takes no credentials at all. Forgetting a scope fails closed: a
route written with `CurrentPrincipal` simply refuses keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.security import SecurityScopes
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth import api_keys
from computebill.auth.models import Scope, User
from computebill.auth.service import AuthComponents, Client, Role, ensure_recent_login
from computebill.auth.tokens import InvalidAccessToken
from computebill.config import Settings
from computebill.deps import AuthDep, ClockDep, SessionDep, SettingsDep
from computebill.errors import AppError

log = structlog.get_logger(__name__)

# `x-required-scope` of routes that take no credentials, and of those only a session may call.
PUBLIC = "public"
SESSION_ONLY = "session"


class NotAuthenticated(AppError):
    status = 401
    code = "not_authenticated"

    def __init__(self, detail: str = "A valid access token is required.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="computebill"'})


class ApiKeyNotAllowed(AppError):
    status = 403
    code = "api_key_not_allowed"

    def __init__(self) -> None:
        super().__init__("This needs a signed-in session; API keys cannot call it.")


class InsufficientScope(AppError):
    status = 403
    code = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"This API key lacks the {scope} scope.",
            headers={
                "WWW-Authenticate": f'Bearer realm="computebill", error="insufficient_scope", '
                f'scope="{scope}"'
            },
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in session."""

    user_id: uuid.UUID
    session_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Caller:
    """Whoever calls a scoped route: a session (`api_key_id` None) or an API key."""

    user_id: uuid.UUID
    api_key_id: uuid.UUID | None


async def _client(request: Request) -> Client:
    return Client(
        ip_address=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )


ClientDep = Annotated[Client, Depends(_client)]


def _bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated()
    return token


async def _session(token: str, auth: AuthComponents, db: AsyncSession) -> Principal:
    try:
        claims = auth.access_tokens.verify(token)
    except InvalidAccessToken as error:
        log.info("access_token_refused", reason=str(error))
        raise NotAuthenticated() from error
    if await auth.revocations.refuses(db, session_id=claims.session_id, user_id=claims.user_id):
        raise NotAuthenticated("This session has ended; log in again.")
    return Principal(user_id=claims.user_id, session_id=claims.session_id)


async def _principal(request: Request, auth: AuthDep, db: SessionDep) -> Principal:
    token = _bearer_token(request)
    if api_keys.is_api_key(token):
        raise ApiKeyNotAllowed()
    return await _session(token, auth, db)


CurrentPrincipal = Annotated[Principal, Depends(_principal)]


async def _caller(
    request: Request,
    security_scopes: SecurityScopes,
    auth: AuthDep,
    db: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Caller:
    token = _bearer_token(request)
    if not api_keys.is_api_key(token):
        principal = await _session(token, auth, db)
        return Caller(user_id=principal.user_id, api_key_id=None)
    holder, used = await api_keys.authenticate(
        db, secret=token, crypto=auth.refresh_tokens, now=clock.now(), client=client
    )
    # The read's (or the last use's) transaction ends here, giving its connection back, as the
    # session check does.
    await (db.commit() if used else db.rollback())
    if holder is None:
        log.info("api_key_refused", client_ip=client.ip_address)
        raise NotAuthenticated("This API key is unknown, revoked or expired.")
    await auth.rate_limiter.hit(
        f"{settings.api_key_rate_limit_per_minute}/minute", "api-key", str(holder.id)
    )
    for scope in security_scopes.scopes:
        if scope not in holder.scopes:
            raise InsufficientScope(scope)
    return Caller(user_id=holder.user_id, api_key_id=holder.id)


ReadAccess = Annotated[Caller, Security(_caller, scopes=[Scope.READ])]
InstancesWriteAccess = Annotated[Caller, Security(_caller, scopes=[Scope.INSTANCES_WRITE])]
BillingWriteAccess = Annotated[Caller, Security(_caller, scopes=[Scope.BILLING_WRITE])]


class NotStaff(AppError):
    status = 403
    code = "forbidden"


SECURITY_PAGE = "/account/security"


class TwoFactorRequired(AppError):
    status = 403
    code = "two_factor_required"

    def __init__(self) -> None:
        super().__init__(
            "Operators need two-factor authentication: turn it on at "
            f"{SECURITY_PAGE} (or POST /api/v1/me/2fa/setup), then try again.",
            extensions={"setup_url": SECURITY_PAGE},
        )


ADMIN = frozenset({Role.ADMIN})
STAFF = frozenset({Role.ADMIN, Role.SUPPORT})


async def ensure_role(
    db: AsyncSession, user_id: uuid.UUID, roles: frozenset[Role], *, settings: Settings
) -> None:
    """Refuse (403) unless the user holds one of these roles and, while `REQUIRE_ADMIN_2FA` is
    on, two-factor authentication: for the API and the console's pages."""
    row = (
        await db.execute(
            select(User.role, User.totp_enabled_at).where(
                User.id == user_id, User.deleted_at.is_(None)
            )
        )
    ).one_or_none()
    if row is None or row.role not in roles:
        raise NotStaff(f"This needs the {' or '.join(sorted(roles))} role.")
    if settings.require_admin_2fa and row.totp_enabled_at is None:
        raise TwoFactorRequired()


async def _admin(principal: CurrentPrincipal, db: SessionDep, settings: SettingsDep) -> Principal:
    await ensure_role(db, principal.user_id, ADMIN, settings=settings)
    return principal


async def _staff(principal: CurrentPrincipal, db: SessionDep, settings: SettingsDep) -> Principal:
    await ensure_role(db, principal.user_id, STAFF, settings=settings)
    return principal


async def _admin_with_recent_login(
    admin: Annotated[Principal, Depends(_admin)],
    db: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> Principal:
    await ensure_recent_login(db, admin.session_id, now=clock.now(), settings=settings)
    return admin


async def _principal_with_recent_login(
    principal: CurrentPrincipal, db: SessionDep, clock: ClockDep, settings: SettingsDep
) -> Principal:
    await ensure_recent_login(db, principal.session_id, now=clock.now(), settings=settings)
    return principal


CurrentAdmin = Annotated[Principal, Depends(_admin)]
# Admins and support: the console's reads (and support's one write, ending sessions).
CurrentStaff = Annotated[Principal, Depends(_staff)]
# An admin whose session proved the password lately: refunds, credit adjustments, replays.
CurrentAdminWithRecentLogin = Annotated[Principal, Depends(_admin_with_recent_login)]
# A session that proved the password lately: what a stolen session must not do alone, turning
# two-factor authentication on (the thief's authenticator) and making API keys.
CurrentPrincipalWithRecentLogin = Annotated[Principal, Depends(_principal_with_recent_login)]


def _required_scopes(dependant: Dependant, found: set[str]) -> set[str]:
    for sub in dependant.dependencies:
        if sub.call is _principal:
            found.add(SESSION_ONLY)
        elif sub.call is _caller:
            found.update(str(scope) for scope in sub.own_oauth_scopes or [])
        _required_scopes(sub, found)
    return found


def json_routes(app: FastAPI) -> Iterator[RouteContext]:
    """Every JSON route of the app, as it is served (with its routers' dependencies)."""
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute):
            yield route


def required_scope(route: RouteContext) -> str:
    """What a route asks of its caller: `public`, `session`, or the API-key scope it needs. A
    route asking a session and a scope at once is a session route (keys are refused)."""
    found = _required_scopes(route.dependant, set())
    if SESSION_ONLY in found:
        return SESSION_ONLY
    if len(found) > 1:
        raise ValueError(f"{route.path} asks for more than one scope: {sorted(found)}")
    return found.pop() if found else PUBLIC
