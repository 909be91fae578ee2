"""What a signed-out visitor was doing when sent to log in: why (the login and sign-up pages say
it), where to go once signed in, and what the page there is to finish. The browser keeps it in a
signed cookie (`tokens.SignedValues`), set only by a form post that passed the CSRF check, good
for half an hour and finished at most once: a spent intent's id is remembered in Redis for as
long as the intent could be presented again."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from computebill.auth.tokens import SignedValues

log = structlog.get_logger(__name__)

INTENT_LIFETIME = timedelta(minutes=30)
# A cookie stays well under the 4 KB browsers keep.
MAX_INTENT_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class LoginIntent:
    """`reason` completes "Log in to …" ("add 2 × NVIDIA H100 SXM to your cart") on the pages of
    the login whose `next` it is; `details`, what the page at `next` needs to finish it."""

    id: str
    next: str
    reason: str
    details: dict[str, Any]


class LoginIntents:
    def __init__(self, pepper: bytes, redis: aioredis.Redis, *, namespace: str) -> None:
        self._signed = SignedValues(
            pepper, purpose=b"computebill login intent", lifetime=INTENT_LIFETIME
        )
        self._redis = redis
        self._spent = f"{namespace}:login-intent-spent:"

    @property
    def lifetime(self) -> timedelta:
        return self._signed.lifetime

    @staticmethod
    def new(*, next: str, reason: str, details: dict[str, Any] | None = None) -> LoginIntent:
        return LoginIntent(
            id=secrets.token_urlsafe(16), next=next, reason=reason, details=details or {}
        )

    def seal(self, intent: LoginIntent, *, now: datetime) -> str:
        body = {"i": intent.id, "n": intent.next, "r": intent.reason, "d": intent.details}
        encoded = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode())
        return self._signed.issue(encoded.decode(), now=now)

    def open(self, token: str | None, *, now: datetime) -> LoginIntent | None:
        """The intent a cookie holds, or None when it is not one we signed, or too old."""
        encoded = self._signed.read(token, now=now, max_length=MAX_INTENT_LENGTH)
        if encoded is None:
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(encoded))
            return LoginIntent(
                id=str(body["i"]), next=str(body["n"]), reason=str(body["r"]), details=body["d"]
            )
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None  # signed by us, so only an older format could land here

    async def spend(self, intent: LoginIntent) -> bool:
        """True the first time only. Without Redis, True: the browser's cookie, deleted as the
        intent is finished, is then what keeps it from being finished again."""
        try:
            first = await self._redis.set(
                self._spent + intent.id, 1, nx=True, ex=int(self.lifetime.total_seconds())
            )
        except RedisError as error:
            log.warning("login_intent_spent_unrecorded", error=repr(error))
            return True
        return bool(first)
