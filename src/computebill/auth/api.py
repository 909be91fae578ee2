"""JSON routes for accounts, tokens and sessions (docs/architecture.md §8)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from computebill.auth import api_keys, service, twofactor
from computebill.auth.dependencies import (
    ClientDep,
    CurrentPrincipal,
    CurrentPrincipalWithRecentLogin,
    NotAuthenticated,
    ReadAccess,
)
from computebill.auth.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyList,
    ApiKeyOut,
    ChangeEmailRequest,
    ChangeNameRequest,
    ChangePasswordRequest,
    DisableTwoFactorRequest,
    EnableTwoFactorRequest,
    LinkTokenRequest,
    LoginRequest,
    MeOut,
    PasswordConfirmation,
    PasswordResetAccepted,
    PasswordResetConfirmRequest,
    PasswordResetRequest,
    RecoveryCodesOut,
    RefreshRequest,
    RevokedCount,
    SecondStepRequest,
    SessionList,
    SessionOut,
    SignupRequest,
    TokenPair,
    TwoFactorSetupOut,
    UserOut,
)
from computebill.auth.service import AuthComponents
from computebill.config import Settings
from computebill.deps import AuthDep, ClockDep, SessionDep, SettingsDep
from computebill.errors import AppError

router = APIRouter(prefix="/api/v1", tags=["auth"])
well_known_router = APIRouter(tags=["auth"])

UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid or revoked credentials"}
}
NEEDS_RECENT_LOGIN: dict[int | str, dict[str, Any]] = {
    **UNAUTHORIZED,
    403: {
        "description": "`reauthentication_required`: the session's login is older than "
        "`REAUTHENTICATE_AFTER_SECONDS`; `POST /auth/reauthenticate`, then try again"
    },
}
PASSWORD_CONFIRMED: dict[int | str, dict[str, Any]] = {
    **UNAUTHORIZED,
    403: {"description": "`wrong_password`"},
    429: {
        "description": "`rate_limited`, with `Retry-After`: wrong passwords count with the "
        "account's failed logins"
    },
}


class InvalidRefreshToken(AppError):
    status = 401
    code = "invalid_refresh_token"


class RefreshTokenReused(AppError):
    """The session was ended for reuse: the unit of work commits the revocation, then this
    answers."""

    status = 401
    code = "refresh_token_reused"
    keeps_writes = True


class SecondStepRequired(AppError):
    """A correct password for an account with two-factor authentication: no tokens, only the
    challenge for `POST /auth/login/mfa`; the unit of work commits the challenge first."""

    status = 401
    code = "mfa_required"
    keeps_writes = True

    def __init__(self, owed: service.SecondStepOwed, *, now: datetime) -> None:
        super().__init__(
            "Enter the code from your authenticator app (or a recovery code).",
            extensions={
                "challenge": owed.challenge,
                "expires_in": int((owed.expires_at - now).total_seconds()),
            },
        )


def _token_pair(
    issued: service.Issued,
    auth: AuthComponents,
    settings: Settings,
    *,
    signed_in_at: datetime | None = None,
) -> TokenPair:
    """The pair; with `signed_in_at` (a sign-up or login) also a device token for later logins."""
    return TokenPair(
        access_token=auth.access_tokens.issue(
            user_id=issued.account.id, session_id=issued.session_id
        ),
        refresh_token=issued.refresh_token,
        expires_in=settings.access_token_ttl_seconds,
        user=UserOut(id=issued.account.id, email=issued.account.email, name=issued.account.name),
        device_token=(
            None
            if signed_in_at is None
            else auth.devices.issue(issued.account.id, now=signed_in_at)
        ),
    )


@router.post("/auth/signup", status_code=status.HTTP_201_CREATED, response_model=TokenPair)
async def sign_up(
    body: SignupRequest,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> TokenPair:
    now = clock.now()
    issued = await service.open_account(
        db,
        email=body.email,
        password=body.password,
        name=body.name,
        rate_limiter=auth.rate_limiter,
        crypto=auth.refresh_tokens,
        settings=settings,
        now=now,
        client=client,
    )
    return _token_pair(issued, auth, settings, signed_in_at=now)


@router.post(
    "/auth/login",
    response_model=TokenPair,
    responses={401: {"description": "Wrong credentials, or `mfa_required` with a challenge"}},
)
async def log_in(
    body: LoginRequest,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> TokenPair:
    now = clock.now()
    result = await service.log_in(
        db,
        email=body.email,
        password=body.password,
        device_token=body.device_token,
        auth=auth,
        settings=settings,
        now=now,
        client=client,
    )
    if isinstance(result, service.SecondStepOwed):
        raise SecondStepRequired(result, now=now)
    return _token_pair(result, auth, settings, signed_in_at=now)


@router.post("/auth/login/mfa", response_model=TokenPair, responses=UNAUTHORIZED)
async def complete_login(
    body: SecondStepRequest,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> TokenPair:
    now = clock.now()
    issued = await twofactor.complete_login(
        db,
        challenge=body.challenge,
        code=body.code,
        auth=auth,
        settings=settings,
        now=now,
        client=client,
    )
    return _token_pair(issued, auth, settings, signed_in_at=now)


@router.post("/auth/refresh", response_model=TokenPair, responses=UNAUTHORIZED)
async def refresh(
    body: RefreshRequest,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> TokenPair:
    result = await service.rotate_refresh_token(
        db,
        token=body.refresh_token,
        crypto=auth.refresh_tokens,
        revocations=auth.revocations,
        rate_limiter=auth.rate_limiter,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    if isinstance(result, service.Issued):
        return _token_pair(result, auth, settings)
    if result.reason is service.RefreshRefusal.REUSED:
        raise RefreshTokenReused("This refresh token was already used; the session has been ended.")
    raise InvalidRefreshToken("The refresh token is invalid or its session has ended.")


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def log_out(
    body: RefreshRequest, db: SessionDep, auth: AuthDep, clock: ClockDep, client: ClientDep
) -> Response:
    await service.log_out(
        db,
        token=body.refresh_token,
        crypto=auth.refresh_tokens,
        revocations=auth.revocations,
        now=clock.now(),
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/sessions", response_model=SessionList, responses=UNAUTHORIZED)
async def list_sessions(
    principal: CurrentPrincipal, db: SessionDep, clock: ClockDep
) -> SessionList:
    sessions = await service.list_sessions(db, user_id=principal.user_id, now=clock.now())
    return SessionList(
        sessions=[
            SessionOut(
                id=s.id,
                user_agent=s.user_agent,
                ip_address=s.ip_address,
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                idle_expires_at=s.idle_expires_at,
                absolute_expires_at=s.absolute_expires_at,
                current=s.id == principal.session_id,
            )
            for s in sessions
        ]
    )


@router.delete(
    "/auth/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=UNAUTHORIZED
)
async def revoke_session(
    session_id: uuid.UUID,
    principal: CurrentPrincipal,
    db: SessionDep,
    auth: AuthDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await service.revoke_session(
        db,
        user_id=principal.user_id,
        session_id=session_id,
        revocations=auth.revocations,
        now=clock.now(),
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/auth/sessions/revoke-others", response_model=RevokedCount, responses=UNAUTHORIZED)
async def revoke_other_sessions(
    principal: CurrentPrincipal, db: SessionDep, auth: AuthDep, clock: ClockDep, client: ClientDep
) -> RevokedCount:
    count = await service.revoke_other_sessions(
        db,
        user_id=principal.user_id,
        keep_session_id=principal.session_id,
        reason=service.EventType.SESSION_REVOKED,
        revocations=auth.revocations,
        now=clock.now(),
        client=client,
    )
    return RevokedCount(revoked=count)


@router.get("/me", response_model=MeOut, responses=UNAUTHORIZED)
async def me(principal: ReadAccess, db: SessionDep) -> MeOut:
    user = await service.get_active_user(db, principal.user_id)
    if user is None:
        raise NotAuthenticated()
    return MeOut.model_validate(user)


@router.patch("/me", response_model=MeOut, responses=UNAUTHORIZED)
async def change_name(
    body: ChangeNameRequest,
    principal: CurrentPrincipal,
    db: SessionDep,
    clock: ClockDep,
    client: ClientDep,
) -> MeOut:
    """Set the display name (null or blank clears it); 422 `invalid_name` for control
    characters."""
    user = await service.rename(
        db, user_id=principal.user_id, name=body.name, now=clock.now(), client=client
    )
    if user is None:
        raise NotAuthenticated()
    return MeOut.model_validate(user)


@router.post("/me/2fa/setup", response_model=TwoFactorSetupOut, responses=UNAUTHORIZED)
async def begin_two_factor_setup(
    principal: CurrentPrincipal, db: SessionDep, auth: AuthDep
) -> TwoFactorSetupOut:
    setup = await twofactor.begin_setup(db, user_id=principal.user_id, auth=auth)
    return TwoFactorSetupOut(secret=setup.secret, otpauth_uri=setup.otpauth_uri)


@router.post("/me/2fa/enable", response_model=RecoveryCodesOut, responses=NEEDS_RECENT_LOGIN)
async def enable_two_factor(
    body: EnableTwoFactorRequest,
    principal: CurrentPrincipalWithRecentLogin,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> RecoveryCodesOut:
    """Turn two-factor authentication on with the first code of the pending secret: the
    recovery codes, shown this once; every other session ends. Needs a recent login (403
    `reauthentication_required`), so a stolen session cannot enrol its own authenticator."""
    codes = await twofactor.enable(
        db,
        user_id=principal.user_id,
        session_id=principal.session_id,
        code=body.code,
        auth=auth,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    return RecoveryCodesOut(recovery_codes=codes)


@router.post(
    "/me/2fa/disable", status_code=status.HTTP_204_NO_CONTENT, responses=PASSWORD_CONFIRMED
)
async def disable_two_factor(
    body: DisableTwoFactorRequest,
    principal: CurrentPrincipal,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await twofactor.disable(
        db,
        user_id=principal.user_id,
        session_id=principal.session_id,
        password=body.password,
        code=body.code,
        auth=auth,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/me/email", response_model=MeOut, responses=PASSWORD_CONFIRMED)
async def change_email(
    body: ChangeEmailRequest,
    principal: CurrentPrincipal,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> MeOut:
    """Move the account to `new_email` (the password confirms it is the owner): the new address
    gets a verification link and must be verified again before buying; the old one is told.
    409 `email_taken` when another account has it."""
    user = await service.change_email(
        db,
        user_id=principal.user_id,
        new_email=body.new_email,
        password=body.password,
        crypto=auth.refresh_tokens,
        rate_limiter=auth.rate_limiter,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    return MeOut.model_validate(user)


@router.post("/auth/verify-email", status_code=status.HTTP_204_NO_CONTENT)
async def verify_email(
    body: LinkTokenRequest, db: SessionDep, auth: AuthDep, clock: ClockDep, client: ClientDep
) -> Response:
    """Spend the token of a verification link: its address is verified. No login needed. 400
    `invalid_token` for a token that is unknown, used, replaced or expired, without saying which."""
    await service.verify_email(
        db, token=body.token, crypto=auth.refresh_tokens, now=clock.now(), client=client
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/verify-email/resend", status_code=status.HTTP_202_ACCEPTED, responses=UNAUTHORIZED
)
async def resend_verification(
    principal: CurrentPrincipal,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    """E-mail a new verification link (the older one stops working). 409
    `email_already_verified`; 429 with Retry-After past the per-account limit."""
    await service.resend_verification(
        db,
        user_id=principal.user_id,
        rate_limiter=auth.rate_limiter,
        crypto=auth.refresh_tokens,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    return Response(status_code=status.HTTP_202_ACCEPTED)


PASSWORD_RESET_ACCEPTED = PasswordResetAccepted(
    detail="If an account has this address, a link to reset its password is on its way."
)


@router.post(
    "/auth/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PasswordResetAccepted,
)
async def request_password_reset(
    body: PasswordResetRequest,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> PasswordResetAccepted:
    """E-mail a reset link valid 30 minutes, if an account has this address: the answer is the
    same either way. 429 past the limits per IP and per address."""
    await service.request_password_reset(
        db,
        email=body.email,
        rate_limiter=auth.rate_limiter,
        crypto=auth.refresh_tokens,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    return PASSWORD_RESET_ACCEPTED


@router.post("/auth/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_password_reset(
    body: PasswordResetConfirmRequest,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    """Spend a reset link's token for a new password (422 `invalid_password` against the policy,
    the link still good): every session of the account ends. 400 `invalid_token`."""
    await service.reset_password(
        db,
        token=body.token,
        new_password=body.new_password,
        crypto=auth.refresh_tokens,
        revocations=auth.revocations,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT, responses=PASSWORD_CONFIRMED)
async def change_password(
    body: ChangePasswordRequest,
    principal: CurrentPrincipal,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await service.change_password(
        db,
        user_id=principal.user_id,
        session_id=principal.session_id,
        current_password=body.current_password,
        new_password=body.new_password,
        revocations=auth.revocations,
        rate_limiter=auth.rate_limiter,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/reauthenticate", status_code=status.HTTP_204_NO_CONTENT, responses=PASSWORD_CONFIRMED
)
async def reauthenticate(
    body: PasswordConfirmation,
    principal: CurrentPrincipal,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    """Enter the password again in this session: the console's destructive actions need it
    within `REAUTHENTICATE_AFTER_SECONDS`."""
    await service.reauthenticate(
        db,
        user_id=principal.user_id,
        session_id=principal.session_id,
        password=body.password,
        rate_limiter=auth.rate_limiter,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/me/delete", status_code=status.HTTP_204_NO_CONTENT, responses=PASSWORD_CONFIRMED)
async def delete_account(
    body: PasswordConfirmation,
    principal: CurrentPrincipal,
    db: SessionDep,
    auth: AuthDep,
    settings: SettingsDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await service.delete_account(
        db,
        user_id=principal.user_id,
        password=body.password,
        revocations=auth.revocations,
        rate_limiter=auth.rate_limiter,
        settings=settings,
        now=clock.now(),
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=NEEDS_RECENT_LOGIN,
)
async def create_api_key(
    body: ApiKeyIn,
    principal: CurrentPrincipalWithRecentLogin,
    db: SessionDep,
    auth: AuthDep,
    clock: ClockDep,
    client: ClientDep,
) -> ApiKeyCreated:
    """A new key, shown this once. Only a signed-in session whose login is recent makes keys
    (403 `reauthentication_required` otherwise): a key never mints one, nor does a session
    alone."""
    created = await api_keys.create_key(
        db,
        user_id=principal.user_id,
        name=body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        crypto=auth.refresh_tokens,
        now=clock.now(),
        client=client,
    )
    listed = ApiKeyOut.model_validate(created.key)
    return ApiKeyCreated(**listed.model_dump(), key=created.secret)


@router.get("/api-keys", response_model=ApiKeyList)
async def list_api_keys(principal: CurrentPrincipal, db: SessionDep) -> ApiKeyList:
    keys = await api_keys.list_keys(db, user_id=principal.user_id)
    return ApiKeyList(api_keys=[ApiKeyOut.model_validate(key) for key in keys])


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(
    key_id: uuid.UUID,
    principal: CurrentPrincipal,
    db: SessionDep,
    clock: ClockDep,
    client: ClientDep,
) -> Response:
    await api_keys.revoke_key(
        db, user_id=principal.user_id, key_id=key_id, now=clock.now(), client=client
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@well_known_router.get("/.well-known/jwks.json", summary="Public keys for access tokens")
async def jwks(auth: AuthDep) -> JSONResponse:
    return JSONResponse(auth.access_tokens.jwks(), headers={"Cache-Control": "max-age=300"})
