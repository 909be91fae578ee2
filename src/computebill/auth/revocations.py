"""Revoked sessions, remembered in Redis for an access token's lifetime so their tokens die at once.

The database stays the record (auth_sessions.revoked_at); Redis is the fast path, and when it
cannot answer the database is asked instead.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import timedelta

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import AuthSession

log = structlog.get_logger(__name__)


# Sessions whose owner this process has read: only a session's first request to a process reads
# the database for it. An owner never changes, so an entry never goes stale; the oldest go first.
OWNER_CACHE_SIZE = 50_000


class RevocationList:
    def __init__(self, redis: aioredis.Redis, *, namespace: str, ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:revoked-session:"
        self._ttl = ttl_seconds
        self._owners: OrderedDict[uuid.UUID, uuid.UUID] = OrderedDict()

    @property
    def ttl(self) -> timedelta:
        """How long a revocation is remembered: longer than any access token of the session."""
        return timedelta(seconds=self._ttl)

    async def add(self, session_ids: list[uuid.UUID]) -> None:
        if not session_ids:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for session_id in session_ids:
                    pipe.set(self._prefix + str(session_id), 1, ex=self._ttl)
                await pipe.execute()
        except RedisError as error:
            # The database row is already revoked; verification falls back to it.
            log.warning("revocation_not_cached", error=repr(error))

    async def refuses(self, db: AsyncSession, *, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Whether an access token for this session and user is refused: the session does not
        exist, is another user's, or has ended. Its first request here reads the session's row
        (which also tells whether it ended); later ones only ask Redis."""
        owner = self._owners.get(session_id)
        if owner is not None:
            self._owners.move_to_end(session_id)
            return owner != user_id or await self._is_revoked(db, session_id)
        row = (
            await db.execute(
                select(AuthSession.user_id, AuthSession.revoked_at).where(
                    AuthSession.id == session_id
                )
            )
        ).one_or_none()
        # The read's transaction ends here, giving its connection back: the request takes one
        # again when it needs it, instead of holding it while its other dependencies resolve
        # (with every connection held so, a cold catalog read would wait for one forever).
        await db.rollback()
        if row is None:
            return True
        self._owners[session_id] = row.user_id
        if len(self._owners) > OWNER_CACHE_SIZE:
            self._owners.popitem(last=False)
        return row.user_id != user_id or row.revoked_at is not None

    async def _is_revoked(self, db: AsyncSession, session_id: uuid.UUID) -> bool:
        try:
            return bool(await self._redis.exists(self._prefix + str(session_id)))
        except RedisError as error:
            log.warning("revocation_cache_unavailable", error=repr(error))
        revoked_at = await db.scalar(
            select(AuthSession.revoked_at).where(AuthSession.id == session_id)
        )
        return revoked_at is not None
