"""The request owns its transaction: commit on success, roll back on error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from sqlalchemy import delete, select, text

from computebill.app import create_app
from computebill.config import DatabasePooler, Settings
from computebill.db import (
    commit,
    connect_arguments,
    create_engine,
    create_sessionmaker,
    unit_of_work,
)
from computebill.deps import SessionDep
from computebill.errors import AppError
from computebill.jobs import JobName, request_job
from computebill.ops import service
from computebill.ops.models import WorkerHeartbeat
from computebill.state import app_state
from tests.support.http import Api, serve
from tests.support.state_machines import JobPool


class RefusedButRecorded(AppError):
    status = 403
    code = "refused_but_recorded"
    keeps_writes = True


async def stored_worker_ids(settings: Settings) -> set[str]:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            return set(await session.scalars(select(WorkerHeartbeat.worker_id)))
    finally:
        await engine.dispose()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)

    @app.post("/probe/{worker_id}")
    async def write(
        worker_id: str, session: SessionDep, fail: bool = False, keep: bool = False
    ) -> dict[str, str]:
        await service.record_heartbeat(session, worker_id=worker_id, hostname="h", pid=1)
        await session.flush()
        if keep:
            raise RefusedButRecorded("refused after writing what must be kept")
        if fail:
            raise AppError("refused after writing")
        return {"written": worker_id}

    async for http in serve(app):
        yield http
    engine = create_engine(settings)
    async with unit_of_work(create_sessionmaker(engine)) as session:
        await session.execute(
            delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id.like("uow-%"))
        )
    await engine.dispose()


async def test_a_successful_request_commits_before_answering(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    answer = await client.post("/probe/uow-committed")
    assert answer.status_code == 200
    assert "uow-committed" in await stored_worker_ids(settings)


async def test_a_failed_request_leaves_no_partial_write(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    answer = await client.post("/probe/uow-rolled-back", params={"fail": "true"})
    assert answer.status_code == 400
    assert "uow-rolled-back" not in await stored_worker_ids(settings)


async def test_a_commit_then_raise_error_answers_after_committing_what_was_written(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    answer = await client.post("/probe/uow-kept", params={"keep": "true"})
    assert answer.status_code == 403
    assert "uow-kept" in await stored_worker_ids(settings)


async def test_a_unit_of_two_transactions_keeps_the_first_when_the_second_fails(
    settings: Settings,
) -> None:
    """What checkout does: commit the order, then ask Stripe in a second transaction."""
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    jobs = JobPool()

    async def two_transactions() -> None:
        async with unit_of_work(sessions, jobs) as session:
            await service.record_heartbeat(session, worker_id="uow-first", hostname="h", pid=1)
            request_job(session, JobName.SEND_ORDER_RECEIPT, "first")
            await commit(session, jobs)
            assert [job.args for job in jobs.waiting] == [("first",)]  # sent at its commit
            await service.record_heartbeat(session, worker_id="uow-second", hostname="h", pid=1)
            request_job(session, JobName.SEND_ORDER_RECEIPT, "second")
            raise AppError("the second transaction fails")

    try:
        with pytest.raises(AppError):
            await two_transactions()
        stored = await stored_worker_ids(settings)
        assert "uow-first" in stored
        assert "uow-second" not in stored
        assert [job.args for job in jobs.waiting] == [("first",)]
    finally:
        async with unit_of_work(sessions) as session:
            await session.execute(
                delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id.like("uow-%"))
            )
        await engine.dispose()


async def test_connections_the_server_dropped_cost_one_answer_at_most(
    api: Api, email: str, settings: Settings
) -> None:
    """Pooled connections are not pinged before use (three round trips each time). When the
    server drops them (a restart, a failover), the first request to meet one answers 503 and
    invalidates the pool; the requests after it run on new connections."""
    pair = await api.sign_up(email)
    statuses = await asyncio.gather(
        *(api.get("/api/v1/me", pair["access_token"]) for _ in range(6))
    )
    assert [s.status_code for s in statuses] == [200] * 6  # several connections in the pool now
    # Only this app's pooled connections, all of them, are dropped: other fixtures' engines share
    # the database.
    app_engine = app_state(api.app).engine
    async with AsyncExitStack() as held:
        idle = app_engine.pool.checkedin()  # type: ignore[attr-defined]
        pooled = [await held.enter_async_context(app_engine.connect()) for _ in range(idle)]
        pids = [await connection.scalar(text("SELECT pg_backend_pid()")) for connection in pooled]
        for connection in pooled:
            await connection.rollback()
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            dropped = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) "
                    "FROM unnest(CAST(:pids AS int[])) AS pid"
                ),
                {"pids": pids},
            )
    finally:
        await engine.dispose()
    assert dropped
    answers = [(await api.get("/api/v1/me", pair["access_token"])).status_code for _ in range(6)]
    assert answers.count(503) <= 1, answers
    assert answers[1:] == [200] * 5, answers


def test_behind_a_transaction_pooler_no_statement_is_cached_nor_named_twice() -> None:
    direct = connect_arguments(DatabasePooler.NONE)
    assert direct == {"server_settings": {"timezone": "UTC", "application_name": "computebill"}}
    pooled = connect_arguments(DatabasePooler.PGBOUNCER_TRANSACTION)
    assert pooled["server_settings"] == direct["server_settings"]
    assert pooled["prepared_statement_cache_size"] == pooled["statement_cache_size"] == 0
    name = pooled["prepared_statement_name_func"]
    assert name() != name()
    assert name().startswith("__asyncpg_")
