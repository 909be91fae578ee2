"""Accounts, login sessions and refresh-token rotation.

Services only flush; the caller commits (docs/architecture.md §5.4). Times come from the
caller's clock.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    ColumnElement,
    DateTime,
    LargeBinary,
    Select,
    String,
    Uuid,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.intents import LoginIntents
from computebill.auth.models import (
    USER_NAME_WORDS,
    AccountToken,
    AuthEvent,
    AuthSession,
    LoginChallenge,
    RecoveryCode,
    RefreshToken,
    User,
)
from computebill.auth.passwords import (
    PasswordPolicyError,
    check_password_policy,
    dummy_hash,
    hash_password,
    verify_password,
)
from computebill.auth.revocations import RevocationList
from computebill.auth.tokens import AccessTokenCodec, KnownDevices, RefreshTokenCrypto, SecretBox
from computebill.config import Settings
from computebill.errors import AppError, NotFound
from computebill.jobs import JobName, request_job
from computebill.mail.service import send_email
from computebill.ratelimit import RateLimited, RateLimiter, limit_window

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AuthComponents:
    """Built once per process at startup."""

    access_tokens: AccessTokenCodec
    refresh_tokens: RefreshTokenCrypto
    revocations: RevocationList
    rate_limiter: RateLimiter
    secrets: SecretBox
    devices: KnownDevices
    intents: LoginIntents


class EventType(StrEnum):
    SIGNUP = "signup"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    REFRESH = "refresh"
    REUSE_DETECTED = "refresh_token_reuse"
    LOGOUT = "logout"
    SESSION_REVOKED = "session_revoked"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    ACCOUNT_DELETED = "account_deleted"
    REAUTHENTICATED = "reauthenticated"
    SECOND_STEP_OWED = "second_step_owed"
    SECOND_STEP_SUCCEEDED = "second_step_succeeded"
    SECOND_STEP_FAILED = "second_step_failed"
    RECOVERY_CODE_USED = "recovery_code_used"
    TWO_FACTOR_ENABLED = "two_factor_enabled"
    TWO_FACTOR_DISABLED = "two_factor_disabled"
    API_KEY_CREATED = "api_key_created"
    API_KEY_REVOKED = "api_key_revoked"
    # The key was used from an address other than the one it was last used from.
    API_KEY_NEW_IP = "api_key_new_ip"
    EMAIL_VERIFICATION_SENT = "email_verification_sent"
    EMAIL_VERIFIED = "email_verified"
    EMAIL_CHANGED = "email_changed"
    PASSWORD_RESET_REQUESTED = "password_reset_requested"  # noqa: S105 - an event name
    PASSWORD_RESET = "password_reset"  # noqa: S105 - an event name
    NAME_CHANGED = "name_changed"


class EmailTaken(AppError):
    status = 409
    code = "email_taken"


class InvalidPassword(AppError):
    status = 422
    code = "invalid_password"


class InvalidEmail(AppError):
    status = 422
    code = "invalid_email"


class InvalidName(AppError):
    status = 422
    code = "invalid_name"


class WrongPassword(AppError):
    status = 403
    code = "wrong_password"


class TooManyWrongPasswords(RateLimited):
    """Wrong passwords, with the failed logins they count with, used the account's limit up:
    429 `rate_limited`, as a login's."""

    attempts = "wrong passwords"


class UnknownCustomer(NotFound):
    """An operator named an account that does not exist (or was deleted)."""

    code = "customer_not_found"


class InvalidCredentials(AppError):
    """A failed login: the unit of work commits its audit event, then the error answers."""

    status = 401
    code = "invalid_credentials"
    keeps_writes = True


class InvalidToken(AppError):
    """A link token that is unknown, spent, replaced or expired: which of these is not said."""

    status = 400
    code = "invalid_token"


class EmailUnverified(AppError):
    status = 403
    code = "email_unverified"


class EmailAlreadyVerified(AppError):
    status = 409
    code = "email_already_verified"


class EmailUnchanged(AppError):
    status = 422
    code = "email_unchanged"


@dataclass(frozen=True, slots=True)
class Client:
    """Where a request came from, for sessions and the audit trail."""

    ip_address: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class Account:
    """The user a token pair is for, as the pair shows them."""

    id: uuid.UUID
    email: str
    name: str | None

    @classmethod
    def of(cls, user: User) -> Account:
        return cls(id=user.id, email=user.email, name=user.name)


@dataclass(frozen=True, slots=True)
class Issued:
    account: Account
    session_id: uuid.UUID
    refresh_token: str


class RefreshRefusal(StrEnum):
    UNKNOWN = "unknown"
    SESSION_ENDED = "session_ended"
    REUSED = "reused"


@dataclass(frozen=True, slots=True)
class Refused:
    reason: RefreshRefusal


def normalize_email(email: str) -> str:
    """The address as stored: trimmed, NFKC and IDNA-normalised (full-width letters and an
    ideographic full stop become ASCII), lower-case."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise InvalidEmail(
            "That is not a valid e-mail address.",
            errors=[{"field": "body.email", "message": str(error), "type": "value_error"}],
        ) from error


def clean_name(name: str | None) -> str | None:
    """A display name without surrounding space (None when empty); control characters, which
    no name has and PostgreSQL text cannot always hold, are refused."""
    if name is None or not name.strip():
        return None
    if any(unicodedata.category(char) in {"Cc", "Cs"} for char in name):
        raise InvalidName(
            "The name has control characters.",
            errors=[{"field": "body.name", "message": "Control character", "type": "value_error"}],
        )
    return name.strip()


def _policy_error(field: str, error: PasswordPolicyError) -> InvalidPassword:
    return InvalidPassword(
        f"The password {error}.",
        errors=[{"field": field, "message": f"Password {error}", "type": "password_policy"}],
    )


async def record_event(
    db: AsyncSession,
    event: EventType,
    *,
    now: datetime,
    client: Client,
    user_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    api_key_id: uuid.UUID | None = None,
) -> None:
    db.add(
        AuthEvent(
            type=event.value,
            user_id=user_id,
            session_id=session_id,
            api_key_id=api_key_id,
            ip_address=client.ip_address[:64],
            user_agent=client.user_agent[:512],
            created_at=now,
        )
    )
    _log_event(event, user_id=user_id, session_id=session_id)


def _log_event(
    event: EventType, *, user_id: uuid.UUID | None, session_id: uuid.UUID | None
) -> None:
    log.info("auth_event", type=event.value, user_id=str(user_id), session_id=str(session_id))


async def sign_up(
    db: AsyncSession,
    *,
    email: str,
    password: str,
    name: str | None,
    settings: Settings,
    now: datetime,
    client: Client,
) -> User:
    normalized = normalize_email(email)
    try:
        check_password_policy(password, email=normalized)
    except PasswordPolicyError as error:
        raise _policy_error("body.password", error) from error
    user = User(
        email=normalized,
        name=clean_name(name),
        password_hash=await hash_password(password, rounds=settings.bcrypt_rounds),
        password_changed_at=now,
    )
    try:
        async with db.begin_nested():
            db.add(user)
            await db.flush()
    except IntegrityError as error:
        raise EmailTaken("An account with this e-mail address already exists.") from error
    await record_event(db, EventType.SIGNUP, now=now, client=client, user_id=user.id)
    return user


def login_key(email: str) -> str:
    """The address a login looks up and counts its failures under: the stored form, so every
    spelling of one account shares its limit; an invalid address matches no account."""
    try:
        return normalize_email(email)
    except InvalidEmail:
        return ""


async def open_account(
    db: AsyncSession,
    *,
    email: str,
    password: str,
    name: str | None,
    rate_limiter: RateLimiter,
    crypto: RefreshTokenCrypto,
    settings: Settings,
    now: datetime,
    client: Client,
) -> Issued:
    """Sign up (limited per IP), e-mail the link that verifies the address, and start the new
    account's first session."""
    await rate_limiter.hit(settings.rate_limit_signup_per_ip, "signup-ip", client.ip_address)
    user = await sign_up(
        db, email=email, password=password, name=name, settings=settings, now=now, client=client
    )
    await send_verification(db, user, crypto=crypto, settings=settings, now=now, client=client)
    return await start_session(db, user, crypto=crypto, settings=settings, now=now, client=client)


async def _login_candidate(db: AsyncSession, account_key: str) -> User | None:
    """The active account a login names, if any."""
    return await db.scalar(select(User).where(User.email == account_key, User.deleted_at.is_(None)))


async def _password_matches(user: User | None, password: str, *, settings: Settings) -> bool:
    """Whether the password is the user's; as slow for no user as for a wrong password."""
    if user is None or user.password_hash is None:
        await verify_password(password, dummy_hash(settings.bcrypt_rounds))
        return False
    return await verify_password(password, user.password_hash)


@dataclass(frozen=True, slots=True)
class SecondStepOwed:
    """A correct password for an account with two-factor authentication: no session yet, only
    a challenge for `twofactor.complete_login`."""

    challenge: str
    expires_at: datetime


CHALLENGE_TTL = timedelta(minutes=5)


async def _open_challenge(
    db: AsyncSession, user: User, *, crypto: RefreshTokenCrypto, now: datetime
) -> SecondStepOwed:
    challenge = crypto.new_token()
    expires_at = now + CHALLENGE_TTL
    db.add(
        LoginChallenge(
            user_id=user.id,
            token_hash=crypto.digest(challenge),
            created_at=now,
            expires_at=expires_at,
        )
    )
    await db.flush()
    return SecondStepOwed(challenge=challenge, expires_at=expires_at)


async def _warn_of_lockout(
    db: AsyncSession, user: User, *, limit: str, settings: Settings, now: datetime
) -> None:
    """The failure that used the account's limit up: its owner hears of it, once per window
    (the key names the window), whoever keeps failing."""
    attempts, window = limit_window(limit)
    await send_email(
        db,
        backend=settings.mail_backend,
        dedupe_key=f"login_lockout:{user.id}:{int(now.timestamp()) // window}",
        recipient=user.email,
        subject="Failed sign-in attempts on your account",
        body=(
            f"There were {attempts} failed sign-in attempts on your Compute Billing account "
            f"({user.email}) within {window // 60} minutes, so sign-ins from new devices are "
            "paused for a while. Devices you signed in from before can still sign in.\n\n"
            "If it wasn't you, someone may be guessing your password: choose a new one, and "
            "turn on two-factor authentication on your account's security page."
        ),
        now=now,
    )


async def log_in(
    db: AsyncSession,
    *,
    email: str,
    password: str,
    device_token: str | None,
    auth: AuthComponents,
    settings: Settings,
    now: datetime,
    client: Client,
) -> Issued | SecondStepOwed:
    """A new session for these credentials (or, with two-factor authentication, the challenge
    of the second step), or InvalidCredentials, which keeps the audited failure.

    Limited per IP, and for failures per account, except from a device the account signed in
    from before (its device token, `tokens.KnownDevices`): that device counts its failures under
    itself, so failures elsewhere, an attacker's, never lock the owner out
    (docs/architecture.md §6)."""
    account_key = login_key(email)
    await auth.rate_limiter.hit(settings.rate_limit_login_per_ip, "login-ip", client.ip_address)
    user = await _login_candidate(db, account_key)
    known_device = (
        user is not None
        and device_token is not None
        and auth.devices.owner(device_token, now=now) == user.id
    )
    limit = settings.rate_limit_login_failures_per_account
    if known_device:
        assert device_token is not None
        counted = ("login-device", auth.refresh_tokens.digest(device_token).hex())
    else:
        counted = ("login-account", account_key)
    await auth.rate_limiter.check(limit, *counted)
    if not await _password_matches(user, password, settings=settings):
        await auth.rate_limiter.hit(limit, *counted)
        if (
            user is not None
            and not known_device
            and await auth.rate_limiter.used_up(limit, *counted)
        ):
            await _warn_of_lockout(db, user, limit=limit, settings=settings, now=now)
        await record_event(db, EventType.LOGIN_FAILED, now=now, client=client)
        raise InvalidCredentials("The e-mail or password is wrong.")
    assert user is not None
    if user.two_factor_enabled:
        await record_event(db, EventType.SECOND_STEP_OWED, now=now, client=client, user_id=user.id)
        return await _open_challenge(db, user, crypto=auth.refresh_tokens, now=now)
    return await start_session(
        db, user, crypto=auth.refresh_tokens, settings=settings, now=now, client=client
    )


def _idle_expiry(auth_session: AuthSession, *, now: datetime, settings: Settings) -> datetime:
    return min(now + timedelta(days=settings.session_idle_days), auth_session.absolute_expires_at)


async def start_session(
    db: AsyncSession,
    user: User,
    *,
    crypto: RefreshTokenCrypto,
    settings: Settings,
    now: datetime,
    client: Client,
) -> Issued:
    auth_session = AuthSession(
        user_id=user.id,
        user_agent=client.user_agent[:512],
        ip_address=client.ip_address[:64],
        last_used_at=now,
        authenticated_at=now,
        absolute_expires_at=now + timedelta(days=settings.session_absolute_days),
    )
    auth_session.idle_expires_at = _idle_expiry(auth_session, now=now, settings=settings)
    db.add(auth_session)
    await db.flush()
    token = crypto.new_token()
    db.add(
        RefreshToken(session_id=auth_session.id, token_hash=crypto.digest(token), created_at=now)
    )
    await db.flush()
    await record_event(
        db,
        EventType.LOGIN_SUCCEEDED,
        now=now,
        client=client,
        user_id=user.id,
        session_id=auth_session.id,
    )
    return Issued(account=Account.of(user), session_id=auth_session.id, refresh_token=token)


def is_active(auth_session: AuthSession, *, now: datetime) -> bool:
    return (
        auth_session.revoked_at is None
        and auth_session.idle_expires_at > now
        and auth_session.absolute_expires_at > now
    )


def _unrevoked_and_unexpired(
    *, at: datetime | ColumnElement[datetime]
) -> tuple[ColumnElement[bool], ...]:
    return (
        AuthSession.revoked_at.is_(None),
        AuthSession.idle_expires_at > at,
        AuthSession.absolute_expires_at > at,
    )


async def _active_session_and_user(
    db: AsyncSession, session_id: uuid.UUID, *, now: datetime
) -> tuple[AuthSession, User] | None:
    row = (
        await db.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.id == session_id, User.deleted_at.is_(None))
            .with_for_update(of=AuthSession)
        )
    ).one_or_none()
    if row is None or not is_active(row[0], now=now):
        return None
    return row[0], row[1]


async def _count_refresh(
    rate_limiter: RateLimiter, session_id: uuid.UUID, *, settings: Settings
) -> None:
    await rate_limiter.hit(
        settings.rate_limit_refresh_per_session, "refresh-session", str(session_id)
    )


def _rotation() -> Select[*tuple[Any, ...]]:
    """The whole of a successful rotation as one statement: spend the token (only if unspent),
    touch its session (only if active and its user not deleted; the UPDATE locks the row and
    re-checks it against a concurrent revocation), insert the child and the audit row. Every
    part after the spend reads the parts before it, so a token that is not spent, or whose
    session has ended, writes nothing else. Built once: its SQL is compiled and cached once.

    Answers one row when the token was spent: the session's id, and the user (None when the
    session has ended, and the caller rolls the spend back). The idle expiry moves as
    `_idle_expiry` moves it. Its parameters are named unlike any column: SQLAlchemy would take
    an execution parameter named as a column of an UPDATE's table for a value to SET."""
    now = bindparam("now", type_=DateTime(timezone=True))
    spent = (
        update(RefreshToken)
        .where(RefreshToken.token_hash == bindparam("digest"), RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .returning(RefreshToken.id, RefreshToken.session_id)
        .cte("spent")
    )
    touched = (
        update(AuthSession)
        .where(
            AuthSession.id == spent.c.session_id,
            User.id == AuthSession.user_id,
            User.deleted_at.is_(None),
            *_unrevoked_and_unexpired(at=now),
        )
        .values(
            last_used_at=now,
            idle_expires_at=func.least(
                bindparam("idle_until", type_=DateTime(timezone=True)),
                AuthSession.absolute_expires_at,
            ),
        )
        .returning(AuthSession.id, AuthSession.user_id, User.email, User.name)
        .cte("touched")
    )
    child = (
        insert(RefreshToken)
        .from_select(
            ["id", "session_id", "token_hash", "parent_id", "created_at"],
            select(
                bindparam("child_id", type_=Uuid),
                touched.c.id,
                bindparam("child_digest", type_=LargeBinary),
                spent.c.id,
                now,
            ).select_from(touched.join(spent, true())),
        )
        .cte("child")
    )
    audit = (
        insert(AuthEvent)
        .from_select(
            ["type", "user_id", "session_id", "ip_address", "user_agent", "created_at"],
            select(
                literal_column(f"'{EventType.REFRESH.value}'", String),
                touched.c.user_id,
                touched.c.id,
                bindparam("client_ip", type_=String),
                bindparam("client_agent", type_=String),
                now,
            ),
        )
        .cte("audit")
    )
    return (
        select(spent.c.session_id, touched.c.user_id, touched.c.email, touched.c.name)
        .select_from(spent.outerjoin(touched, true()))
        .add_cte(child, audit)
    )


_ROTATION = _rotation()


async def rotate_refresh_token(
    db: AsyncSession,
    *,
    token: str,
    crypto: RefreshTokenCrypto,
    revocations: RevocationList,
    rate_limiter: RateLimiter,
    settings: Settings,
    now: datetime,
    client: Client,
) -> Issued | Refused:
    """Spend a refresh token for a new pair, for the JSON API and the cookie refresh alike.

    The spend is one conditional UPDATE, so of many concurrent refreshes with one token exactly
    one wins; the others wait for its commit, then find the token spent moments ago and get the
    same child. A spent token presented after the grace window, or any older ancestor, is reuse:
    the whole session is revoked. A rotation that wins is one round trip to PostgreSQL
    (`_rotation`); the rest (grace, reuse, unknown tokens) is rare and reads step by step.

    Limited per session, counted once the token is known good: RateLimited rolls the rotation
    back with it, so the presented token is not spent.
    """
    digest = crypto.digest(token)
    child = crypto.child_of(token)
    connection = await db.connection()
    rotated = (
        await connection.execute(
            _ROTATION,
            {
                "digest": digest,
                "now": now,
                "idle_until": now + timedelta(days=settings.session_idle_days),
                "child_id": uuid.uuid4(),
                "child_digest": crypto.digest(child),
                "client_ip": client.ip_address[:64],
                "client_agent": client.user_agent[:512],
            },
        )
    ).one_or_none()

    if rotated is not None:
        if rotated.user_id is None:
            return Refused(RefreshRefusal.SESSION_ENDED)  # the caller rolls back: nothing spent
        await _count_refresh(rate_limiter, rotated.session_id, settings=settings)
        _log_event(EventType.REFRESH, user_id=rotated.user_id, session_id=rotated.session_id)
        return Issued(
            account=Account(id=rotated.user_id, email=rotated.email, name=rotated.name),
            session_id=rotated.session_id,
            refresh_token=child,
        )

    presented = await db.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))
    if presented is None or presented.used_at is None:
        return Refused(RefreshRefusal.UNKNOWN)
    successor = await db.scalar(select(RefreshToken).where(RefreshToken.parent_id == presented.id))
    within_grace = now - presented.used_at <= timedelta(seconds=settings.refresh_grace_seconds)
    if within_grace and successor is not None and successor.used_at is None:
        found = await _active_session_and_user(db, presented.session_id, now=now)
        if found is None:
            return Refused(RefreshRefusal.SESSION_ENDED)
        auth_session, user = found
        await _count_refresh(rate_limiter, auth_session.id, settings=settings)
        return Issued(account=Account.of(user), session_id=auth_session.id, refresh_token=child)

    family = await db.get(AuthSession, presented.session_id, with_for_update=True)
    assert family is not None  # a token's session is deleted only with the token
    log.warning(
        "refresh_token_reuse",
        session_id=str(family.id),
        user_id=str(family.user_id),
        ip_address=client.ip_address,
    )
    await revoke_sessions(
        db,
        [family],
        reason=EventType.REUSE_DETECTED,
        revocations=revocations,
        now=now,
        client=client,
    )
    return Refused(RefreshRefusal.REUSED)


async def revoke_sessions(
    db: AsyncSession,
    auth_sessions: list[AuthSession],
    *,
    reason: EventType,
    revocations: RevocationList,
    now: datetime,
    client: Client,
) -> None:
    revoked = [s for s in auth_sessions if s.revoked_at is None]
    for auth_session in revoked:
        auth_session.revoked_at = now
        auth_session.revoked_reason = reason.value
        await record_event(
            db,
            reason,
            now=now,
            client=client,
            user_id=auth_session.user_id,
            session_id=auth_session.id,
        )
    await db.flush()
    # Cached before the commit: if the commit then fails, a live session is refused for a few
    # minutes at worst, never the reverse.
    await revocations.add([auth_session.id for auth_session in revoked])


async def log_out(
    db: AsyncSession,
    *,
    token: str,
    crypto: RefreshTokenCrypto,
    revocations: RevocationList,
    now: datetime,
    client: Client,
) -> None:
    """End the session the refresh token belongs to; an unknown token is a no-op."""
    presented = await db.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == crypto.digest(token))
    )
    if presented is None:
        return
    auth_session = await db.get(AuthSession, presented.session_id, with_for_update=True)
    if auth_session is not None:
        await revoke_sessions(
            db,
            [auth_session],
            reason=EventType.LOGOUT,
            revocations=revocations,
            now=now,
            client=client,
        )


async def list_sessions(
    db: AsyncSession, *, user_id: uuid.UUID, now: datetime
) -> list[AuthSession]:
    sessions = await db.scalars(
        select(AuthSession)
        .where(AuthSession.user_id == user_id, *_unrevoked_and_unexpired(at=now))
        .order_by(AuthSession.last_used_at.desc())
    )
    return list(sessions)


async def revoke_session(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    revocations: RevocationList,
    now: datetime,
    client: Client,
) -> None:
    """Revoke one of the user's own sessions; NotFound when it is not theirs (a 404 for someone
    else's too, so ids do not leak) or does not exist."""
    auth_session = await db.scalar(
        select(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.user_id == user_id)
        .with_for_update()
    )
    if auth_session is None:
        raise NotFound("No such session.")
    await revoke_sessions(
        db,
        [auth_session],
        reason=EventType.SESSION_REVOKED,
        revocations=revocations,
        now=now,
        client=client,
    )


async def revoke_other_sessions(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    keep_session_id: uuid.UUID | None,
    reason: EventType,
    revocations: RevocationList,
    now: datetime,
    client: Client,
) -> int:
    """Revoke the user's sessions that may still have a live access token: the unrevoked ones
    that had not yet expired one access-token lifetime ago (a token outlives its session's
    absolute expiry by up to that). Long-expired sessions are neither locked nor audited, so the
    cost is bounded by what is live."""
    query = select(AuthSession).where(
        AuthSession.user_id == user_id, *_unrevoked_and_unexpired(at=now - revocations.ttl)
    )
    if keep_session_id is not None:
        query = query.where(AuthSession.id != keep_session_id)
    others = list(await db.scalars(query.with_for_update()))
    await revoke_sessions(
        db, others, reason=reason, revocations=revocations, now=now, client=client
    )
    return len(others)


async def user_with_password(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    password: str,
    rate_limiter: RateLimiter,
    settings: Settings,
) -> User:
    """The user, locked, once `password` proves it is theirs: the one check of everything a
    signed-in session confirms with the password (reauthenticating, changing the password or the
    address, turning two-factor authentication off, deleting the account). Wrong passwords count
    with the account's failed logins (`RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT`, under its
    address), so a stolen session guesses no faster than a login: once the limit is used up,
    429 `rate_limited` (`TooManyWrongPasswords`), even for the right password."""
    user = await db.scalar(
        select(User).where(User.id == user_id, User.deleted_at.is_(None)).with_for_update()
    )
    if user is None or user.password_hash is None:
        raise WrongPassword("The current password is wrong.")
    failures = (settings.rate_limit_login_failures_per_account, "login-account", user.email)
    await rate_limiter.check(*failures, refusal=TooManyWrongPasswords)
    if not await verify_password(password, user.password_hash):
        await rate_limiter.hit(*failures, refusal=TooManyWrongPasswords)
        raise WrongPassword("The current password is wrong.")
    return user


async def change_password(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    current_password: str,
    new_password: str,
    revocations: RevocationList,
    rate_limiter: RateLimiter,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """Set a new password and end every other session of the user."""
    user = await user_with_password(
        db,
        user_id=user_id,
        password=current_password,
        rate_limiter=rate_limiter,
        settings=settings,
    )
    try:
        check_password_policy(new_password, email=user.email)
    except PasswordPolicyError as error:
        raise _policy_error("body.new_password", error) from error
    await _set_password(
        db,
        user,
        new_password,
        session_id=session_id,
        event=EventType.PASSWORD_CHANGED,
        revocations=revocations,
        settings=settings,
        now=now,
        client=client,
    )


async def _set_password(
    db: AsyncSession,
    user: User,
    new_password: str,
    *,
    session_id: uuid.UUID | None,
    event: EventType,
    revocations: RevocationList,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """Set a password the policy allowed, audit it, and end every session of the user but
    `session_id` (None: every one)."""
    user.password_hash = await hash_password(new_password, rounds=settings.bcrypt_rounds)
    user.password_changed_at = now
    await record_event(db, event, now=now, client=client, user_id=user.id, session_id=session_id)
    await revoke_other_sessions(
        db,
        user_id=user.id,
        keep_session_id=session_id,
        reason=event,
        revocations=revocations,
        now=now,
        client=client,
    )


async def delete_account(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    password: str,
    revocations: RevocationList,
    rate_limiter: RateLimiter,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """End every session and anonymise the user; the row stays so orders keep their owner."""
    user = await user_with_password(
        db, user_id=user_id, password=password, rate_limiter=rate_limiter, settings=settings
    )
    await revoke_other_sessions(
        db,
        user_id=user.id,
        keep_session_id=None,
        reason=EventType.ACCOUNT_DELETED,
        revocations=revocations,
        now=now,
        client=client,
    )
    user.email = f"deleted-{user.id}@deleted.invalid"
    user.name = None
    user.password_hash = None
    user.totp_secret = user.totp_pending_secret = None
    user.deleted_at = now
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    # Its machines stop: the instances' sweep finds a deleted owner's live ones.
    request_job(db, JobName.SWEEP_INSTANCES)
    await db.flush()


async def get_active_user(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await db.scalar(select(User).where(User.id == user_id, User.deleted_at.is_(None)))


async def rename(
    db: AsyncSession, *, user_id: uuid.UUID, name: str | None, now: datetime, client: Client
) -> User | None:
    """Set the account's display name (blank clears it); None when the account is gone."""
    user = await get_active_user(db, user_id)
    if user is None:
        return None
    cleaned = clean_name(name)
    if cleaned != user.name:
        user.name = cleaned
        await record_event(db, EventType.NAME_CHANGED, now=now, client=client, user_id=user.id)
        await db.flush()
    return user


class Role(StrEnum):
    USER = "user"
    SUPPORT = "support"  # the operator's console, read-only, and ending a customer's sessions
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class RoleChange:
    user_id: uuid.UUID
    before: Role
    after: Role


async def set_role(db: AsyncSession, *, email: str, role: Role) -> RoleChange | None:
    """Give an account a role (`Role.USER` takes the operator's away); None when there is no
    such account."""
    user = await db.scalar(
        select(User)
        .where(User.email == normalize_email(email), User.deleted_at.is_(None))
        .with_for_update()
    )
    if user is None:
        return None
    change = RoleChange(user_id=user.id, before=Role(user.role), after=role)
    user.role = role.value
    await db.flush()
    return change


class ReauthenticationRequired(AppError):
    status = 403
    code = "reauthentication_required"

    def __init__(
        self,
        detail: str = "This action needs a recent login: enter your password again "
        "(POST /api/v1/auth/reauthenticate).",
    ) -> None:
        super().__init__(detail)


async def has_recent_login(
    db: AsyncSession, session_id: uuid.UUID, *, now: datetime, settings: Settings
) -> bool:
    """Whether the session proved its password within `REAUTHENTICATE_AFTER_SECONDS`."""
    authenticated_at = await db.scalar(
        select(AuthSession.authenticated_at).where(AuthSession.id == session_id)
    )
    window = timedelta(seconds=settings.reauthenticate_after_seconds)
    return authenticated_at is not None and authenticated_at >= now - window


async def ensure_recent_login(
    db: AsyncSession, session_id: uuid.UUID, *, now: datetime, settings: Settings
) -> None:
    """Refuse unless the session proved its password within `REAUTHENTICATE_AFTER_SECONDS`."""
    if not await has_recent_login(db, session_id, now=now, settings=settings):
        raise ReauthenticationRequired()


async def reauthenticate(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    password: str,
    rate_limiter: RateLimiter,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """Prove the password again in this session; its failures count with the login's."""
    await user_with_password(
        db, user_id=user_id, password=password, rate_limiter=rate_limiter, settings=settings
    )
    await db.execute(
        update(AuthSession).where(AuthSession.id == session_id).values(authenticated_at=now)
    )
    await record_event(
        db,
        EventType.REAUTHENTICATED,
        now=now,
        client=client,
        user_id=user_id,
        session_id=session_id,
    )


# Links e-mailed to the owner: verify the address, reset the password -------------------------


class TokenPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose name


@dataclass(frozen=True, slots=True)
class LinkEmail:
    """The e-mail that carries a link of one purpose: the page it opens, how long it works, and
    its text (`{link}` stands for the link)."""

    path: str
    lifetime: timedelta
    subject: str
    body: str


LINK_EMAILS = {
    TokenPurpose.VERIFY_EMAIL: LinkEmail(
        path="/verify-email",
        lifetime=timedelta(hours=24),
        subject="Confirm your e-mail address",
        body=(
            "Confirm that this is your e-mail address, so that you can buy compute:\n\n"
            "{link}\n\n"
            "The link works once, within 24 hours. If you did not ask for it, ignore this e-mail."
        ),
    ),
    TokenPurpose.PASSWORD_RESET: LinkEmail(
        path="/password-reset/confirm",
        lifetime=timedelta(minutes=30),
        subject="Reset your password",
        body=(
            "Someone asked to reset the password of your account. To choose a new one, open:\n\n"
            "{link}\n\n"
            "The link works once, within 30 minutes. If it was not you, ignore this e-mail: "
            "your password stays as it is."
        ),
    ),
}


def _url(settings: Settings, path: str) -> str:
    return str(settings.public_base_url).rstrip("/") + path


async def _issue_token(
    db: AsyncSession,
    user: User,
    purpose: TokenPurpose,
    *,
    crypto: RefreshTokenCrypto,
    now: datetime,
) -> tuple[uuid.UUID, str]:
    """A new link token of this purpose for the user's current address, (its row's id, the token);
    the user's older unspent tokens of the purpose are spent, so only the newest link works."""
    await db.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == purpose.value,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
    token = crypto.new_token()
    row = AccountToken(
        user_id=user.id,
        purpose=purpose.value,
        token_hash=crypto.digest(token),
        email=user.email,
        created_at=now,
        expires_at=now + LINK_EMAILS[purpose].lifetime,
    )
    db.add(row)
    await db.flush()
    return row.id, token


async def _email_link(
    db: AsyncSession,
    user: User,
    purpose: TokenPurpose,
    *,
    crypto: RefreshTokenCrypto,
    settings: Settings,
    now: datetime,
) -> None:
    """Issue a link token of this purpose and e-mail its link to the user's address."""
    token_id, token = await _issue_token(db, user, purpose, crypto=crypto, now=now)
    email = LINK_EMAILS[purpose]
    await send_email(
        db,
        backend=settings.mail_backend,
        dedupe_key=f"{purpose.value}:{token_id}",
        recipient=user.email,
        subject=email.subject,
        body=email.body.format(link=f"{_url(settings, email.path)}?token={token}"),
        now=now,
    )


async def _spend_token(
    db: AsyncSession,
    token: str,
    purpose: TokenPurpose,
    *,
    crypto: RefreshTokenCrypto,
    now: datetime,
) -> User:
    """The user a live token of this purpose is for, the token spent; InvalidToken otherwise.

    The spend is one conditional UPDATE, so of two requests with one token exactly one wins. A
    token sent to an address the account no longer has (changed, or deleted) is void; a refusal
    rolls the spend back with the rest of the request."""
    spent = (
        await db.execute(
            update(AccountToken)
            .where(
                AccountToken.token_hash == crypto.digest(token),
                AccountToken.purpose == purpose.value,
                AccountToken.used_at.is_(None),
                AccountToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(AccountToken.user_id, AccountToken.email)
        )
    ).one_or_none()
    user = (
        None
        if spent is None
        else await db.scalar(
            select(User)
            .where(User.id == spent.user_id, User.email == spent.email, User.deleted_at.is_(None))
            .with_for_update()
        )
    )
    if user is None:
        raise InvalidToken("This link is invalid or has expired; ask for a new one.")
    return user


async def send_verification(
    db: AsyncSession,
    user: User,
    *,
    crypto: RefreshTokenCrypto,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """E-mail the user a link that verifies their current address (valid 24 hours)."""
    await _email_link(
        db, user, TokenPurpose.VERIFY_EMAIL, crypto=crypto, settings=settings, now=now
    )
    await record_event(
        db, EventType.EMAIL_VERIFICATION_SENT, now=now, client=client, user_id=user.id
    )


async def verify_email(
    db: AsyncSession, *, token: str, crypto: RefreshTokenCrypto, now: datetime, client: Client
) -> User:
    """Spend a verification link: the address it was sent to is verified."""
    user = await _spend_token(db, token, TokenPurpose.VERIFY_EMAIL, crypto=crypto, now=now)
    if user.email_verified_at is None:
        user.email_verified_at = now
    await record_event(db, EventType.EMAIL_VERIFIED, now=now, client=client, user_id=user.id)
    await db.flush()
    return user


async def resend_verification(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    rate_limiter: RateLimiter,
    crypto: RefreshTokenCrypto,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """A new verification link (the older one stops working); limited per account."""
    await rate_limiter.hit(
        settings.rate_limit_verification_resend_per_account, "verify-resend", str(user_id)
    )
    user = await db.scalar(
        select(User).where(User.id == user_id, User.deleted_at.is_(None)).with_for_update()
    )
    if user is None:
        raise NotFound("No such account.")
    if user.email_verified_at is not None:
        raise EmailAlreadyVerified("Your e-mail address is already verified.")
    await send_verification(db, user, crypto=crypto, settings=settings, now=now, client=client)


async def email_verified(db: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether the user has verified their current address."""
    verified_at = await db.scalar(select(User.email_verified_at).where(User.id == user_id))
    return verified_at is not None


async def require_verified_email(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Refuse (403 `email_unverified`) unless the user has verified their address: the one check
    every way to buy (checkout, top-ups, saving a card, pay-as-you-go launches, turning
    auto-recharge on) makes first."""
    if not await email_verified(db, user_id):
        raise EmailUnverified(
            "Verify your e-mail address before buying: follow the link we sent you, "
            "or ask for a new one."
        )


async def change_email(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    new_email: str,
    password: str,
    crypto: RefreshTokenCrypto,
    rate_limiter: RateLimiter,
    settings: Settings,
    now: datetime,
    client: Client,
) -> User:
    """Move the account to a new address: it must be verified again (a link goes to it), and the
    old address is told."""
    user = await user_with_password(
        db, user_id=user_id, password=password, rate_limiter=rate_limiter, settings=settings
    )
    normalized = normalize_email(new_email)
    if normalized == user.email:
        raise EmailUnchanged("That is already your e-mail address.")
    old_email = user.email
    try:
        async with db.begin_nested():
            user.email = normalized
            user.email_verified_at = None
            await db.flush()
    except IntegrityError as error:
        raise EmailTaken("An account with this e-mail address already exists.") from error
    await record_event(db, EventType.EMAIL_CHANGED, now=now, client=client, user_id=user.id)
    await send_email(
        db,
        backend=settings.mail_backend,
        dedupe_key=f"email-changed:{user.id}:{now.isoformat()}",
        recipient=old_email,
        subject="Your e-mail address was changed",
        body=(
            f"The e-mail address of your account was changed to {normalized}.\n\n"
            "If you did not do this, reset your password at "
            f"{_url(settings, '/password-reset')} and contact support."
        ),
        now=now,
    )
    await send_verification(db, user, crypto=crypto, settings=settings, now=now, client=client)
    return user


async def request_password_reset(
    db: AsyncSession,
    *,
    email: str,
    rate_limiter: RateLimiter,
    crypto: RefreshTokenCrypto,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """E-mail a reset link (valid 30 minutes; older ones stop working) if an account has this
    address. Limited per IP and per normalised address. The caller answers the same either way,
    and both ways do the same keyed hashing and write an audit row, so neither the answer nor
    its timing says whether the account exists."""
    address = login_key(email)
    await rate_limiter.hit(settings.rate_limit_password_reset_per_ip, "reset-ip", client.ip_address)
    await rate_limiter.hit(settings.rate_limit_password_reset_per_address, "reset-address", address)
    user = await db.scalar(
        select(User).where(User.email == address, User.deleted_at.is_(None)).with_for_update()
    )
    if user is None:
        crypto.digest(crypto.new_token())  # the work a real token costs, for nobody
        await record_event(db, EventType.PASSWORD_RESET_REQUESTED, now=now, client=client)
        return
    await _email_link(
        db, user, TokenPurpose.PASSWORD_RESET, crypto=crypto, settings=settings, now=now
    )
    await record_event(
        db, EventType.PASSWORD_RESET_REQUESTED, now=now, client=client, user_id=user.id
    )


async def reset_password(
    db: AsyncSession,
    *,
    token: str,
    new_password: str,
    crypto: RefreshTokenCrypto,
    revocations: RevocationList,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """Spend a reset link: set the new password, end every session of the account, tell its
    owner. The link proved the inbox, so the address counts as verified too. API keys keep
    working, as after a password change (the owner revokes them one by one); the notice says
    so and links to them."""
    try:
        # A password the policy refuses leaves the link unspent, whether or not the caller then
        # commits (a page shows the form again).
        async with db.begin_nested():
            user = await _spend_token(
                db, token, TokenPurpose.PASSWORD_RESET, crypto=crypto, now=now
            )
            check_password_policy(new_password, email=user.email)
    except PasswordPolicyError as error:
        raise _policy_error("body.new_password", error) from error
    if user.email_verified_at is None:
        user.email_verified_at = now
    await _set_password(
        db,
        user,
        new_password,
        session_id=None,
        event=EventType.PASSWORD_RESET,
        revocations=revocations,
        settings=settings,
        now=now,
        client=client,
    )
    await send_email(
        db,
        backend=settings.mail_backend,
        dedupe_key=f"password-was-reset:{user.id}:{now.isoformat()}",
        recipient=user.email,
        subject="Your password was reset",
        body=(
            "The password of your account was reset, and every session was signed out. Your "
            "API keys keep working: revoke any you did not make at "
            f"{_url(settings, '/account/api-keys')}.\n\n"
            "If you did not do this, reset it again at "
            f"{_url(settings, '/password-reset')} and contact support."
        ),
        now=now,
    )


# The operator's view of accounts (docs/architecture.md §8, the console) -----------------------


def _like_prefix(text: str) -> str:
    """`text` as a LIKE pattern matching it literally at the start of a value."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


_NAME_WORD = re.compile(r"[^\W_]+")


async def search_accounts(db: AsyncSession, query: str, *, limit: int) -> list[User]:
    """Accounts an operator looks for: by id, by the start of the address, or by the starts of
    words of the name; deleted accounts are left out (their address is gone). At most `limit`,
    by address.

    The address and the name are two queries, each bounded by its own index: as one query with
    OR, the planner walks the whole address index in order, filtering."""
    text = query.strip()
    if not text:
        return []
    live = User.deleted_at.is_(None)
    try:
        by_id = uuid.UUID(text)
    except ValueError:
        pass
    else:
        return list(await db.scalars(select(User).where(User.id == by_id, live)))
    # The pattern index's own order (byte order), which is also Python's order of the merge.
    by_address: ColumnElement[str] = literal_column("users.email USING ~<~")
    found = list(
        await db.scalars(
            select(User)
            .where(User.email.like(_like_prefix(text.lower())), live)
            .order_by(by_address)
            .limit(limit)
        )
    )
    words = _NAME_WORD.findall(text.lower())
    if words:
        # Each word a prefix, all of them present: letters and digits only, so the query's
        # syntax is ours.
        prefixes = " & ".join(f"{word}:*" for word in words)
        named = USER_NAME_WORDS.bool_op("@@")(
            func.to_tsquery(literal_column("'simple'::regconfig"), prefixes)
        )
        found += await db.scalars(select(User).where(named, live).order_by(by_address).limit(limit))
    unique = {user.id: user for user in found}
    return sorted(unique.values(), key=lambda user: user.email)[:limit]


async def recent_auth_events(
    db: AsyncSession, user_id: uuid.UUID, *, limit: int
) -> list[AuthEvent]:
    """The account's latest authentication events, newest first."""
    found = await db.scalars(
        select(AuthEvent)
        .where(AuthEvent.user_id == user_id)
        .order_by(AuthEvent.created_at.desc(), AuthEvent.id.desc())
        .limit(limit)
    )
    return list(found)
