"""The request owns its transaction: commit on success, roll back on error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import delete, select

from computebill.app import create_app
from computebill.config import Settings
from computebill.db import commit, create_engine, create_sessionmaker, unit_of_work
from computebill.deps import SessionDep
from computebill.errors import AppError
from computebill.jobs import JobName, request_job
from computebill.ops import service
from computebill.ops.models import WorkerHeartbeat
from tests.support.http import serve
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
