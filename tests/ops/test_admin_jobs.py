"""Admins see the job queue: what waits, what is scheduled, what failed."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from computebill.config import Settings
from computebill.jobs import JobName, JobRequest
from computebill.state import app_state
from tests.support.admins import make_admin
from tests.support.http import Api, api_for


@pytest.fixture
async def idle_queue_api(settings: Settings) -> AsyncIterator[Api]:
    """The app on a queue no worker reads, so what is sent stays visible."""
    idle = settings.model_copy(
        update={"redis_namespace": f"{settings.redis_namespace}-idle-{secrets.token_hex(3)}"}
    )
    async for api in api_for(idle):
        yield api


async def test_admins_see_queued_and_scheduled_jobs(
    idle_queue_api: Api, settings: Settings, email: str
) -> None:
    api = idle_queue_api
    user = await api.sign_up(email)
    assert (await api.get("/api/v1/admin/jobs", user["access_token"])).status_code == 403
    await make_admin(
        settings, email, http=api.http, access_token=user["access_token"], at=api.clock.now()
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    await app_state(api.app).publisher.publish(
        [
            JobRequest(JobName.SEND_ORDER_RECEIPT, ("order-now",)),
            JobRequest(JobName.EXPIRE_INSTANCE, ("instance-later",), at=later),
        ]
    )
    jobs = (await api.get("/api/v1/admin/jobs", user["access_token"])).json()
    assert [(j["job"], j["state"]) for j in jobs["queued"]] == [("send_order_receipt", "queued")]
    [scheduled] = jobs["scheduled"]
    assert scheduled["job"] == "expire_instance"
    assert abs(datetime.fromisoformat(scheduled["at"]) - later) < timedelta(seconds=1)
    assert jobs["failed"] == []


async def test_a_queue_no_job_was_ever_sent_to_is_shown_empty(
    idle_queue_api: Api, settings: Settings, email: str
) -> None:
    """A fresh Redis has none of the queue's streams yet: the view says so rather than fail."""
    api = idle_queue_api
    user = await api.sign_up(email)
    await make_admin(
        settings, email, http=api.http, access_token=user["access_token"], at=api.clock.now()
    )
    answer = await api.get("/api/v1/admin/jobs", user["access_token"])
    assert answer.status_code == 200, answer.text
    jobs = answer.json()
    assert (jobs["queued"], jobs["running"], jobs["scheduled"], jobs["failed"]) == ([], [], [], [])
