"""The queue's connection and wire format, shared by the worker and the publisher.

Every use of the queue library lives in `computebill.queue` and `computebill.worker`, so replacing
it touches those two packages. Payloads are JSON, never pickle: a job payload in Redis cannot make
the worker run code.
"""

from __future__ import annotations

import json
from typing import Any

from computebill.config import Settings


class JobError(Exception):
    """A job's failure as stored in Redis: the error's type name and message, never the object."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def _encode(value: object) -> object:
    if isinstance(value, BaseException):
        if isinstance(value, JobError):
            return {"__error__": value.error_type, "message": value.message}
        return {"__error__": type(value).__name__, "message": str(value)}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode(value: dict[str, Any]) -> object:
    if set(value) == {"__error__", "message"}:
        return JobError(str(value["__error__"]), str(value["message"]))
    return value


def _serialize(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), default=_encode).encode()


def _deserialize(raw: bytes | str) -> Any:
    return json.loads(raw, object_hook=_decode)


def queue_options(settings: Settings, *, concurrency: int | None = None) -> dict[str, Any]:
    return {
        "redis_url": settings.required_redis_url,
        # Fail fast when Redis is away: callers fall back on the sweeps.
        "redis_kwargs": {"connect_timeout": 2, "stream_timeout": 10},
        "concurrency": concurrency or settings.worker_concurrency,
        "queue_name": settings.queue_name,
        "serializer": _serialize,
        "deserializer": _deserialize,
        "idle_timeout": settings.job_idle_timeout_seconds,
        "grace_period": settings.worker_shutdown_grace_seconds,
    }
