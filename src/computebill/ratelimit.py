"""Rate limits in Redis (moving windows from the `limits` library), shared by every app process."""

from __future__ import annotations

import math
import time
from functools import cache

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from computebill.errors import AppError

log = structlog.get_logger(__name__)


class RateLimited(AppError):
    status = 429
    code = "rate_limited"
    # What was tried too often, as the refusal says it; a subclass names its own.
    attempts = "attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many {self.attempts}; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


# A limit's text ("30/minute") parsed once per process, not on every hit.
_parsed_limit = cache(parse)


class RateLimiter:
    def __init__(self, redis_url: str, *, namespace: str) -> None:
        storage = RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            key_prefix=f"{namespace}:ratelimit",
            socket_timeout=2,
        )
        self._limiter = MovingWindowRateLimiter(storage)

    async def _retry_after(self, item: RateLimitItem, keys: tuple[str, ...]) -> int:
        stats = await self._limiter.get_window_stats(item, *keys)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def hit(self, limit: str, *keys: str, refusal: type[RateLimited] = RateLimited) -> None:
        """Count one attempt; raise `refusal` when the limit is already used up."""
        await self._enforce(limit, keys, count=True, refusal=refusal)

    async def check(self, limit: str, *keys: str, refusal: type[RateLimited] = RateLimited) -> None:
        """Raise `refusal` if the limit is used up, without counting an attempt."""
        await self._enforce(limit, keys, count=False, refusal=refusal)

    async def used_up(self, limit: str, *keys: str) -> bool:
        """Whether the limit is used up now (False when Redis cannot say)."""
        try:
            return not await self._limiter.test(_parsed_limit(limit), *keys)
        except RedisError as error:
            log.warning("rate_limit_unavailable", error=repr(error))
            return False

    async def _enforce(
        self, limit: str, keys: tuple[str, ...], *, count: bool, refusal: type[RateLimited]
    ) -> None:
        item = _parsed_limit(limit)
        try:
            allowed = await (self._limiter.hit if count else self._limiter.test)(item, *keys)
            if allowed:
                return
            retry_after = await self._retry_after(item, keys)
        except RedisError as error:
            # Availability over strictness: a Redis outage must not lock every user out.
            log.warning("rate_limit_unavailable", error=repr(error))
            return
        raise refusal(retry_after)


def limit_window(limit: str) -> tuple[int, int]:
    """A limit's attempts and window in seconds: (10, 900) for "10/15minutes"."""
    item = _parsed_limit(limit)
    return item.amount, int(item.get_expiry())
