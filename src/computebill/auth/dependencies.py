"""Who is calling: the Bearer access token, verified and checked against revoked sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import User
from computebill.auth.service import Client, Role, ensure_recent_login
from computebill.auth.tokens import InvalidAccessToken
from computebill.config import Settings
from computebill.deps import AuthDep, ClockDep, SessionDep, SettingsDep
from computebill.errors import AppError

log = structlog.get_logger(__name__)


class NotAuthenticated(AppError):
    status = 401
    code = "not_authenticated"

    def __init__(self, detail: str = "A valid access token is required.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="computebill"'})


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    session_id: uuid.UUID


async def _client(request: Request) -> Client:
    return Client(
        ip_address=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )


ClientDep = Annotated[Client, Depends(_client)]


async def _principal(request: Request, auth: AuthDep, db: SessionDep) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated()
    try:
        claims = auth.access_tokens.verify(token.strip())
    except InvalidAccessToken as error:
        log.info("access_token_refused", reason=str(error))
        raise NotAuthenticated() from error
    if await auth.revocations.refuses(db, session_id=claims.session_id, user_id=claims.user_id):
        raise NotAuthenticated("This session has ended; log in again.")
    return Principal(user_id=claims.user_id, session_id=claims.session_id)


CurrentPrincipal = Annotated[Principal, Depends(_principal)]


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


async def ensure_admin(db: AsyncSession, user_id: uuid.UUID, *, settings: Settings) -> None:
    await ensure_role(db, user_id, ADMIN, settings=settings)


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


CurrentAdmin = Annotated[Principal, Depends(_admin)]
# Admins and support: the console's reads (and support's one write, ending sessions).
CurrentStaff = Annotated[Principal, Depends(_staff)]
# An admin whose session proved the password lately: refunds, credit adjustments, replays.
CurrentAdminWithRecentLogin = Annotated[Principal, Depends(_admin_with_recent_login)]
