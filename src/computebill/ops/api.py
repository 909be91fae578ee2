"""Health, readiness and metrics endpoints for load balancers and monitoring."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from computebill.auth.dependencies import CurrentAdmin
from computebill.config import Settings
from computebill.deps import EngineDep, PublisherDep, RedisDep, SettingsDep
from computebill.errors import AppError, DependencyUnavailable
from computebill.http_guards import from_loopback
from computebill.metrics import READY, render_metrics
from computebill.ops import service
from computebill.ops.schemas import JobOut, Liveness, QueueOut, Readiness
from computebill.queue.publisher import AppQueuePublisher, QueueUnavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Liveness, summary="The process is alive")
async def healthz() -> Liveness:
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database, Redis and a worker are reachable",
    responses={503: {"model": Readiness, "description": "A dependency is down; `down` names it"}},
)
async def readyz(engine: EngineDep, redis: RedisDep, settings: SettingsDep) -> JSONResponse:
    readiness = await service.check_readiness(
        engine,
        redis,
        max_heartbeat_age_seconds=settings.worker_heartbeat_max_age_seconds,
    )
    READY.set(1 if readiness.status == "ok" else 0)
    return JSONResponse(
        readiness.model_dump(exclude_none=True),
        status_code=200 if readiness.status == "ok" else 503,
        headers={"Cache-Control": "no-store"},
    )


class MetricsTokenRequired(AppError):
    status = 401
    code = "metrics_token_required"


def _may_read_metrics(request: Request, settings: Settings) -> None:
    """METRICS_TOKEN set: its bearer may read, others get 401. Unset: loopback peers only (the
    client after FORWARDED_ALLOW_IPS), others get 404, as if there were no such page."""
    if settings.metrics_token is None:
        if not from_loopback(request):
            raise HTTPException(404)
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
        raise MetricsTokenRequired(
            "The metrics token is required.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, settings: SettingsDep, redis: RedisDep) -> Response:
    _may_read_metrics(request, settings)
    # The gauges that need the database: the worker's snapshot, one HGETALL (never a query).
    snapshot = await service.read_snapshot(redis, settings.redis_namespace)
    body, content_type = render_metrics(snapshot)
    return Response(body, media_type=content_type)


async def read_queue(publisher: AppQueuePublisher) -> QueueOut:
    """The queue overview the admin API answers and the admin page shows; 503 while the queue
    cannot be reached."""
    try:
        overview = await publisher.overview()
    except QueueUnavailable as error:
        raise DependencyUnavailable("The job queue cannot be reached.") from error
    return QueueOut(
        queued=[JobOut.model_validate(j, from_attributes=True) for j in overview.queued],
        running=[JobOut.model_validate(j, from_attributes=True) for j in overview.running],
        scheduled=[JobOut.model_validate(j, from_attributes=True) for j in overview.scheduled],
        failed=[JobOut.model_validate(j, from_attributes=True) for j in overview.failed],
        recently_succeeded=overview.succeeded,
    )


@router.get("/api/v1/admin/jobs", response_model=QueueOut, tags=["admin"])
async def jobs(admin: CurrentAdmin, publisher: PublisherDep) -> QueueOut:
    """The job queue: what waits, runs, is scheduled, and what failed after its last try."""
    return await read_queue(publisher)
