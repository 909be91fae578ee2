"""The admin's view of the job queue: the overview `/api/v1/admin/jobs` answers, as a page that
refreshes itself."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from computebill.auth.browser import AdminCustomer, verify_csrf
from computebill.deps import PublisherDep
from computebill.errors import DependencyUnavailable
from computebill.ops.api import read_queue
from computebill.queue.publisher import AppQueuePublisher
from computebill.web.rendering import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])


async def _queue(publisher: AppQueuePublisher) -> dict[str, Any]:
    """The queue's figures, or why they cannot be shown (the page keeps trying)."""
    try:
        queue = await read_queue(publisher)
    except DependencyUnavailable as error:
        return {"queue": None, "error": error.detail}
    # (key, figure's label, section's heading, jobs)
    sections = [
        ("running", "Running", "Running now", queue.running),
        ("queued", "Queued", "Waiting for a worker", queue.queued),
        ("scheduled", "Scheduled", "Scheduled for later", queue.scheduled),
        ("failed", "Failed", "Failed after their last try", queue.failed),
    ]
    return {"queue": queue, "sections": sections, "error": None}


@router.get("/admin/jobs", response_class=HTMLResponse)
async def jobs(request: Request, admin: AdminCustomer, publisher: PublisherDep) -> HTMLResponse:
    """The page polls itself every 5 s and swaps in its `#queue` part."""
    return render(request, "admin_jobs.html", await _queue(publisher), visitor=admin.visitor)
