from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import delete, text, update

from computebill.app import create_app
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.devserver.embedded import free_port
from computebill.ops import service
from computebill.ops.models import WorkerHeartbeat
from tests.support.http import serve


@pytest.fixture
async def heartbeats(settings: Settings) -> AsyncIterator[None]:
    """An empty heartbeat table before and after the test."""
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    async with unit_of_work(sessionmaker) as session:
        await session.execute(delete(WorkerHeartbeat))
    yield
    async with unit_of_work(sessionmaker) as session:
        await session.execute(delete(WorkerHeartbeat))
    await engine.dispose()


async def record(settings: Settings, *, age_seconds: int = 0) -> None:
    engine = create_engine(settings)
    async with unit_of_work(create_sessionmaker(engine)) as session:
        await service.record_heartbeat(session, worker_id="w-test", hostname="host", pid=1)
        if age_seconds:
            await session.execute(
                update(WorkerHeartbeat).values(
                    seen_at=text(f"now() - interval '{int(age_seconds)} seconds'")
                )
            )
    await engine.dispose()


async def test_healthz_answers_while_the_process_lives(client: httpx.AsyncClient) -> None:
    answer = await client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


@pytest.mark.usefixtures("heartbeats")
async def test_readyz_names_the_worker_when_none_has_reported(client: httpx.AsyncClient) -> None:
    answer = await client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["down"] == ["worker"]
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["worker"]["detail"] == "no worker has reported yet"


@pytest.mark.usefixtures("heartbeats")
async def test_readyz_is_ok_with_a_fresh_heartbeat(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    await record(settings)
    answer = await client.get("/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok"
    assert body["down"] == []
    assert 0 <= body["checks"]["worker"]["last_heartbeat_age_seconds"] < 5
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.usefixtures("heartbeats")
async def test_readyz_reports_a_stale_heartbeat_with_its_age(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    await record(settings, age_seconds=settings.worker_heartbeat_max_age_seconds + 15)
    answer = await client.get("/readyz")
    assert answer.status_code == 503
    worker = answer.json()["checks"]["worker"]
    assert worker["status"] == "fail"
    assert worker["last_heartbeat_age_seconds"] >= settings.worker_heartbeat_max_age_seconds + 15
    assert worker["detail"].startswith("no heartbeat for ")


async def test_readyz_names_redis_when_it_is_unreachable(settings: Settings) -> None:
    await record(settings)
    broken = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async for client in serve(create_app(broken)):
        answer = await client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["down"] == ["redis"]
    assert body["checks"]["redis"]["status"] == "fail"
    assert body["checks"]["database"]["status"] == "ok"


async def test_readyz_names_the_database_when_it_is_unreachable(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"}
    )
    async for client in serve(create_app(broken)):
        answer = await client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["down"] == ["database", "worker"]
    assert body["checks"]["worker"]["detail"] == "unknown: the database is down"
    assert "password" not in body["checks"]["database"]["detail"]


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/no/such/page/12345")
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text_body = answer.text
    assert (
        'computebill_http_requests_total{method="GET",route="/healthz",status="200"}' in text_body
    )
    assert 'route="<unmatched>",status="404"' in text_body
    assert "/no/such/page/12345" not in text_body
    assert (
        'computebill_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"}'
        in text_body
    )
