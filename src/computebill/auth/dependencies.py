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
from computebill.auth.service import Client
from computebill.auth.tokens import InvalidAccessToken
from computebill.deps import AuthDep, SessionDep
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


class NotAdmin(AppError):
    status = 403
    code = "forbidden"


async def ensure_admin(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Refuse (403) unless the user has the admin role: for the API and the admin pages."""
    role = await db.scalar(select(User.role).where(User.id == user_id, User.deleted_at.is_(None)))
    if role != "admin":
        raise NotAdmin("This needs the admin role.")


async def _admin(principal: CurrentPrincipal, db: SessionDep) -> Principal:
    await ensure_admin(db, principal.user_id)
    return principal


CurrentAdmin = Annotated[Principal, Depends(_admin)]
