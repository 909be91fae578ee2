"""Revoked sessions, remembered in Redis for an access token's lifetime so their tokens die at once.

The database stays the record (auth_sessions.revoked_at); Redis is the fast path, and when it
cannot answer the database is asked instead.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.models import AuthSession

log = structlog.get_logger(__name__)


class RevocationList:
    def __init__(self, redis: aioredis.Redis, *, namespace: str, ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:revoked-session:"
        self._ttl = ttl_seconds

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

    async def is_revoked(self, db: AsyncSession, session_id: uuid.UUID) -> bool:
        try:
            return bool(await self._redis.exists(self._prefix + str(session_id)))
        except RedisError as error:
            log.warning("revocation_cache_unavailable", error=repr(error))
        revoked_at = await db.scalar(
            select(AuthSession.revoked_at).where(AuthSession.id == session_id)
        )
        return revoked_at is not None
