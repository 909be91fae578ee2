"""API keys: a customer's named, scoped credentials for the JSON API (docs/architecture.md §8).

A key is `cb_live_` and 43 random characters, shown once; the database holds its HMAC under the
pepper (the refresh tokens' digest) and its first characters, to tell keys apart in a list.
Services only flush; the caller commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import ApiKey, Scope, User
from computebill.auth.service import Client, EventType, InvalidName, clean_name, record_event
from computebill.auth.tokens import RefreshTokenCrypto
from computebill.errors import AppError, Conflict, NotFound

API_KEY_PREFIX = "cb_live_"
VISIBLE_PREFIX_LENGTH = 8
MAX_KEYS_PER_ACCOUNT = 50
MAX_LIFETIME = timedelta(days=365)
# A key's last use is written at most this often (or when its address changes), so a busy key
# costs no write per request.
LAST_USE_RESOLUTION = timedelta(minutes=1)


class InvalidExpiry(AppError):
    status = 422
    code = "invalid_expiry"


class TooManyApiKeys(Conflict):
    code = "too_many_api_keys"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    secret: str  # the whole key, for the one answer that shows it


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """A live key that was presented: whose it is and what it may do."""

    id: uuid.UUID
    user_id: uuid.UUID
    scopes: frozenset[str]


def is_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


async def create_key(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    name: str,
    scopes: list[Scope],
    expires_at: datetime | None,
    crypto: RefreshTokenCrypto,
    now: datetime,
    client: Client,
) -> CreatedKey:
    cleaned = clean_name(name)
    if cleaned is None:
        raise InvalidName(
            "Give the key a name.",
            errors=[{"field": "body.name", "message": "Empty name", "type": "value_error"}],
        )
    if expires_at is not None and not now < expires_at <= now + MAX_LIFETIME:
        raise InvalidExpiry(
            "A key expires in the future, and within a year.",
            errors=[{"field": "body.expires_at", "message": "Out of range", "type": "value_error"}],
        )
    live = await db.scalar(
        select(ApiKey.id)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .offset(MAX_KEYS_PER_ACCOUNT - 1)
        .limit(1)
    )
    if live is not None:
        raise TooManyApiKeys(f"An account has at most {MAX_KEYS_PER_ACCOUNT} keys: revoke one.")
    random_part = crypto.new_token()
    secret = API_KEY_PREFIX + random_part
    key = ApiKey(
        user_id=user_id,
        name=cleaned,
        prefix=random_part[:VISIBLE_PREFIX_LENGTH],
        key_hash=crypto.digest(secret),
        scopes=[scope.value for scope in Scope if scope in scopes],
        created_at=now,
        expires_at=expires_at,
    )
    db.add(key)
    await db.flush()
    await record_event(
        db, EventType.API_KEY_CREATED, now=now, client=client, user_id=user_id, api_key_id=key.id
    )
    return CreatedKey(key=key, secret=secret)


async def list_keys(db: AsyncSession, *, user_id: uuid.UUID) -> list[ApiKey]:
    """The account's keys that are not revoked (expired ones too, so the owner sees them)."""
    keys = await db.scalars(
        select(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at.desc(), ApiKey.id)
    )
    return list(keys)


async def revoke_key(
    db: AsyncSession, *, user_id: uuid.UUID, key_id: uuid.UUID, now: datetime, client: Client
) -> None:
    """Revoke one of the user's keys; NotFound when it is not theirs (so ids do not leak), does
    not exist or is already revoked. Every process reads the key's row on each request, so the
    key is refused from the commit on."""
    revoked = await db.scalar(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(ApiKey.id)
    )
    if revoked is None:
        raise NotFound("No such API key.")
    await record_event(
        db, EventType.API_KEY_REVOKED, now=now, client=client, user_id=user_id, api_key_id=key_id
    )


async def authenticate(
    db: AsyncSession, *, secret: str, crypto: RefreshTokenCrypto, now: datetime, client: Client
) -> tuple[KeyHolder | None, bool]:
    """The live key `secret` is, or None; and whether its last use was written (the caller then
    commits). One read by the key's unique digest; a write at most once a minute per key, or
    when it is used from another address."""
    row = (
        await db.execute(
            select(
                ApiKey.id,
                ApiKey.user_id,
                ApiKey.scopes,
                ApiKey.expires_at,
                ApiKey.last_used_at,
                ApiKey.last_used_ip,
            )
            .join(User, User.id == ApiKey.user_id)
            .where(
                ApiKey.key_hash == crypto.digest(secret),
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
                User.deleted_at.is_(None),
            )
        )
    ).one_or_none()
    if row is None:
        return None, False
    holder = KeyHolder(id=row.id, user_id=row.user_id, scopes=frozenset(row.scopes))
    ip_address = client.ip_address[:64]
    new_address = row.last_used_ip != ip_address
    stale = row.last_used_at is None or now - row.last_used_at >= LAST_USE_RESOLUTION
    if not (new_address or stale):
        return holder, False
    await db.execute(
        update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now, last_used_ip=ip_address)
    )
    if new_address:
        await record_event(
            db,
            EventType.API_KEY_NEW_IP,
            now=now,
            client=client,
            user_id=row.user_id,
            api_key_id=row.id,
        )
    return holder, True
