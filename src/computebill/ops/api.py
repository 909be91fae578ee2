"""Health, readiness and metrics endpoints for load balancers and monitoring."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from computebill.auth.dependencies import CurrentAdmin
from computebill.deps import EngineDep, PublisherDep, RedisDep, SettingsDep
from computebill.errors import DependencyUnavailable
from computebill.metrics import render_metrics
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
    return JSONResponse(
        readiness.model_dump(exclude_none=True),
        status_code=200 if readiness.status == "ok" else 503,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    body, content_type = render_metrics()
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
