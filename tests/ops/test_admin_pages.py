"""The admin's job-queue page: the figures of `/api/v1/admin/jobs`, for admins only, refreshing
itself."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from computebill.config import Settings
from computebill.jobs import JobName, JobRequest
from computebill.state import app_state
from tests.support.admins import make_admin
from tests.support.markup import elements, the
from tests.support.pages import Browser, browser_for


@pytest.fixture
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    """The site on a queue no worker reads, so what is sent stays visible."""
    idle = settings.model_copy(
        update={"redis_namespace": f"{settings.redis_namespace}-idle-{secrets.token_hex(3)}"}
    )
    async for value in browser_for(idle):
        yield value


async def test_anonymous_visitors_are_sent_to_log_in(browser: Browser) -> None:
    answer = await browser.page("/admin/jobs")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/admin/jobs"


async def test_users_without_the_admin_role_get_the_forbidden_page(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    answer = await browser.page("/admin/jobs")
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert "This needs the admin role." in answer.text
    assert email in answer.text  # the error page, in the layout, for the signed-in user
    assert elements(answer.text, "data-queue") == []


async def test_admins_see_the_queue_figures_refreshing_every_5_seconds(
    browser: Browser, settings: Settings, email: str
) -> None:
    await browser.sign_up(email)
    await make_admin(
        settings,
        email,
        http=browser.http,
        access_token=browser.access_token,
        at=browser.clock.now(),
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    await app_state(browser.app).publisher.publish(
        [
            JobRequest(JobName.SEND_ORDER_RECEIPT, ("order-now",)),
            JobRequest(JobName.SEND_ORDER_RECEIPT, ("order-also-now",)),
            JobRequest(JobName.EXPIRE_INSTANCE, ("instance-later",), at=later),
        ]
    )

    answer = await browser.page("/admin/jobs")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    counts = {
        e.attrs["data-queue-count"]: e.text for e in elements(answer.text, "data-queue-count")
    }
    assert counts == {
        "running": "0",
        "queued": "2",
        "scheduled": "1",
        "failed": "0",
        "succeeded": "0",
    }
    jobs = [
        (e.attrs["data-job"], e.attrs["data-job-state"]) for e in elements(answer.text, "data-job")
    ]
    assert sorted(jobs) == [
        ("expire_instance", "scheduled"),
        ("send_order_receipt", "queued"),
        ("send_order_receipt", "queued"),
    ]
    assert later.strftime("%Y-%m-%d %H:%M") in answer.text
    # The same overview the JSON API answers, to the same session's token.
    token = browser.access_token
    api = await browser.http.get("/api/v1/admin/jobs", headers={"authorization": f"Bearer {token}"})
    assert api.status_code == 200
    body = api.json()
    assert {key: str(len(body[key])) for key in ("running", "queued", "scheduled", "failed")} == {
        key: counts[key] for key in ("running", "queued", "scheduled", "failed")
    }
    queue = the(answer.text, "data-queue")
    assert queue.attrs["hx-get"] == "/admin/jobs"
    assert queue.attrs["hx-select"] == "#queue"
    assert queue.attrs["hx-trigger"] == "every 5s"
