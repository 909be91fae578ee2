"""Two-factor authentication: TOTP (RFC 6238) with recovery codes, set up and turned off by
the account's owner, and the second step of a login (docs/architecture.md §6).

Services only flush; the caller commits (docs/architecture.md §5.4). Times come from the
caller's clock, so TOTP time steps follow it too.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import pyotp
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import LoginChallenge, RecoveryCode, User
from computebill.auth.service import (
    AuthComponents,
    Client,
    EventType,
    Issued,
    record_event,
    revoke_other_sessions,
    start_session,
    user_with_password,
)
from computebill.config import Settings
from computebill.errors import AppError, Conflict
from computebill.mail.service import send_email

ISSUER = "Compute Billing"
RECOVERY_CODES = 10
# Codes of the step before and after the current one are accepted too: a phone's clock a little
# off, or a code typed as it changed.
STEPS_EITHER_SIDE = 1
# Wrong codes one challenge takes before it is spent; the account's own limit is a setting.
ATTEMPTS_PER_CHALLENGE = 5
# 10 characters of Crockford-like base32 without look-alikes: 50 bits, shown as "xxxxx-xxxxx".
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_RECOVERY_LENGTH = 10


class TwoFactorAlreadyEnabled(Conflict):
    code = "two_factor_already_enabled"


class TwoFactorNotEnabled(Conflict):
    code = "two_factor_not_enabled"


class NoPendingSetup(Conflict):
    code = "two_factor_setup_missing"


class InvalidCode(AppError):
    """A wrong TOTP or recovery code; keeps its audit event and the spent attempt."""

    status = 422
    code = "invalid_code"
    keeps_writes = True


class InvalidChallenge(AppError):
    status = 401
    code = "invalid_challenge"


@dataclass(frozen=True, slots=True)
class PendingSetup:
    secret: str
    otpauth_uri: str


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret)


def otpauth_uri(secret: str, *, email: str) -> str:
    return _totp(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def _accepted_step(secret: str, code: str, *, after: int | None, now: datetime) -> int | None:
    """The time step whose code this is, within a step of now and later than `after` (a code
    of a step already used, or an earlier one, is refused); None when there is none."""
    totp = _totp(secret)
    current = totp.timecode(now)
    for step in range(current - STEPS_EITHER_SIDE, current + STEPS_EITHER_SIDE + 1):
        if (after is None or step > after) and hmac.compare_digest(
            totp.generate_otp(step).encode(), code.encode()
        ):
            return step
    return None


def _normalized_recovery_code(code: str) -> str:
    return "".join(char for char in code.lower() if char.isalnum())


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


async def _locked_user(db: AsyncSession, user_id: uuid.UUID) -> User:
    user = await db.scalar(
        select(User).where(User.id == user_id, User.deleted_at.is_(None)).with_for_update()
    )
    if user is None:
        raise TwoFactorNotEnabled("No such account.")
    return user


async def begin_setup(
    db: AsyncSession, *, user_id: uuid.UUID, auth: AuthComponents
) -> PendingSetup:
    """A new secret waiting for its first code; not yet asked at login."""
    user = await _locked_user(db, user_id)
    if user.two_factor_enabled:
        raise TwoFactorAlreadyEnabled("Two-factor authentication is already on.")
    secret = pyotp.random_base32()
    user.totp_pending_secret = auth.secrets.seal(secret)
    await db.flush()
    return PendingSetup(secret=secret, otpauth_uri=otpauth_uri(secret, email=user.email))


def pending_setup(user: User, *, auth: AuthComponents) -> PendingSetup | None:
    """The setup waiting for its first code, to show again."""
    if user.totp_pending_secret is None or user.two_factor_enabled:
        return None
    secret = auth.secrets.open(user.totp_pending_secret)
    return PendingSetup(secret=secret, otpauth_uri=otpauth_uri(secret, email=user.email))


async def _notify(
    db: AsyncSession, user: User, *, turned_on: bool, settings: Settings, now: datetime
) -> None:
    state = "on" if turned_on else "off"
    await send_email(
        db,
        backend=settings.mail_backend,
        dedupe_key=f"two_factor_{state}:{user.id}:{now.isoformat()}",
        recipient=user.email,
        subject=f"Two-factor authentication was turned {state}",
        body=(
            f"Two-factor authentication was turned {state} for your Compute Billing account "
            f"({user.email}), and every other signed-in device was signed out.\n\n"
            "If it wasn't you, change your password at once and check your account's security "
            "page."
        ),
        now=now,
    )


async def _switch(
    db: AsyncSession,
    user: User,
    *,
    secret: bytes | None,
    step: int | None,
    session_id: uuid.UUID,
    auth: AuthComponents,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """Turn two-factor authentication on (with this sealed secret and its first step) or off
    (None): the old recovery codes go, every other session ends, the owner is told."""
    user.totp_secret = secret
    user.totp_pending_secret = None
    user.totp_enabled_at = None if secret is None else now
    user.totp_last_step = step
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    await db.flush()
    event = EventType.TWO_FACTOR_DISABLED if secret is None else EventType.TWO_FACTOR_ENABLED
    await record_event(db, event, now=now, client=client, user_id=user.id, session_id=session_id)
    await revoke_other_sessions(
        db,
        user_id=user.id,
        keep_session_id=session_id,
        reason=event,
        revocations=auth.revocations,
        now=now,
        client=client,
    )
    await _notify(
        db, user, turned_on=event is EventType.TWO_FACTOR_ENABLED, settings=settings, now=now
    )


async def enable(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    code: str,
    auth: AuthComponents,
    settings: Settings,
    now: datetime,
    client: Client,
) -> list[str]:
    """Turn two-factor authentication on with the first code of the pending secret; answers the
    recovery codes, shown this once. Every other session ends."""
    user = await _locked_user(db, user_id)
    if user.two_factor_enabled:
        raise TwoFactorAlreadyEnabled("Two-factor authentication is already on.")
    if user.totp_pending_secret is None:
        raise NoPendingSetup("Start the setup first: there is no secret waiting for a code.")
    secret = auth.secrets.open(user.totp_pending_secret)
    step = _accepted_step(secret, code.strip(), after=None, now=now)
    if step is None:
        raise InvalidCode("That code is not right; enter the code your app shows now.")
    await _switch(
        db,
        user,
        secret=user.totp_pending_secret,
        step=step,
        session_id=session_id,
        auth=auth,
        settings=settings,
        now=now,
        client=client,
    )
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    db.add_all(
        RecoveryCode(
            user_id=user.id,
            code_hash=auth.refresh_tokens.digest(_normalized_recovery_code(c)),
            created_at=now,
        )
        for c in codes
    )
    await db.flush()
    return codes


async def _second_factor_accepted(
    db: AsyncSession, user: User, code: str, *, auth: AuthComponents, now: datetime
) -> EventType | None:
    """Whether the code is the account's: a TOTP code of a step not used yet (the step is then
    used), or an unused recovery code (then spent). The user's row is locked by the caller, so
    two requests with one code cannot both pass."""
    code = code.strip()
    if code.isdigit() and len(code) == 6:
        assert user.totp_secret is not None
        step = _accepted_step(
            auth.secrets.open(user.totp_secret), code, after=user.totp_last_step, now=now
        )
        if step is None:
            return None
        user.totp_last_step = step
        await db.flush()
        return EventType.SECOND_STEP_SUCCEEDED
    spent = await db.scalar(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == auth.refresh_tokens.digest(_normalized_recovery_code(code)),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .returning(RecoveryCode.id)
    )
    return EventType.RECOVERY_CODE_USED if spent is not None else None


async def _check_code(
    db: AsyncSession,
    user: User,
    code: str,
    *,
    auth: AuthComponents,
    settings: Settings,
    now: datetime,
    client: Client,
    session_id: uuid.UUID | None = None,
    challenge_key: str | None = None,
) -> EventType:
    """The code checked under the account's limit of wrong codes (and the challenge's, at
    login): a wrong one is counted, audited and refused."""
    limit = settings.rate_limit_mfa_failures_per_account
    counters = [(limit, "mfa-account", str(user.id))]
    if challenge_key is not None:
        counters.append((f"{ATTEMPTS_PER_CHALLENGE}/5minutes", "mfa-challenge", challenge_key))
    for counter in counters:
        await auth.rate_limiter.check(*counter)
    accepted = await _second_factor_accepted(db, user, code, auth=auth, now=now)
    if accepted is None:
        for counter in counters:
            await auth.rate_limiter.hit(*counter)
        await record_event(
            db,
            EventType.SECOND_STEP_FAILED,
            now=now,
            client=client,
            user_id=user.id,
            session_id=session_id,
        )
        raise InvalidCode("That code is not right, or was already used.")
    return accepted


async def complete_login(
    db: AsyncSession,
    *,
    challenge: str,
    code: str,
    auth: AuthComponents,
    settings: Settings,
    now: datetime,
    client: Client,
) -> Issued:
    """The second step: a live challenge and a code of its account give the session; the
    challenge is then spent. A wrong code leaves it for another try, within the limits."""
    digest = auth.refresh_tokens.digest(challenge)
    found = await db.scalar(
        select(LoginChallenge).where(LoginChallenge.token_hash == digest).with_for_update()
    )
    if found is None or found.used_at is not None or found.expires_at <= now:
        raise InvalidChallenge("This sign-in has expired or was already finished; log in again.")
    user = await db.scalar(
        select(User).where(User.id == found.user_id, User.deleted_at.is_(None)).with_for_update()
    )
    if user is None or user.totp_secret is None:
        raise InvalidChallenge("This sign-in has expired or was already finished; log in again.")
    event = await _check_code(
        db,
        user,
        code,
        auth=auth,
        settings=settings,
        now=now,
        client=client,
        challenge_key=str(found.id),
    )
    found.used_at = now
    issued = await start_session(
        db, user, crypto=auth.refresh_tokens, settings=settings, now=now, client=client
    )
    await record_event(
        db, event, now=now, client=client, user_id=user.id, session_id=issued.session_id
    )
    return issued


async def disable(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    password: str,
    code: str,
    auth: AuthComponents,
    settings: Settings,
    now: datetime,
    client: Client,
) -> None:
    """Turn two-factor authentication off: the password and a code (TOTP or recovery) say it is
    the owner. Every other session ends."""
    user = await user_with_password(
        db, user_id=user_id, password=password, rate_limiter=auth.rate_limiter, settings=settings
    )
    if not user.two_factor_enabled:
        raise TwoFactorNotEnabled("Two-factor authentication is not on.")
    await _check_code(
        db,
        user,
        code,
        auth=auth,
        settings=settings,
        now=now,
        client=client,
        session_id=session_id,
    )
    await _switch(
        db,
        user,
        secret=None,
        step=None,
        session_id=session_id,
        auth=auth,
        settings=settings,
        now=now,
        client=client,
    )
