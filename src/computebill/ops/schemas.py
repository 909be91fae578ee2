from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

CheckStatus = Literal["ok", "fail"]


class DependencyCheck(BaseModel):
    status: CheckStatus
    detail: str
    latency_ms: int | None = None


class WorkerCheck(BaseModel):
    status: CheckStatus
    detail: str
    last_heartbeat_age_seconds: float | None = None
    max_age_seconds: int


class Readiness(BaseModel):
    status: CheckStatus
    down: list[str]
    checks: dict[str, DependencyCheck | WorkerCheck]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class JobOut(BaseModel):
    job: str
    job_id: str
    state: str
    tries: int
    at: datetime | None
    error: str | None


class QueueOut(BaseModel):
    queued: list[JobOut]
    running: list[JobOut]
    scheduled: list[JobOut]
    failed: list[JobOut]
    recently_succeeded: int
