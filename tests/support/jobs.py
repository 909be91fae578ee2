"""The context the worker gives every job, for a test that runs a job itself, and a publisher
that keeps what is sent to it."""

from __future__ import annotations

from computebill.clock import SystemClock
from computebill.config import Settings
from computebill.devserver.scratch import Sessions
from computebill.instances.provider import SimulatedProvider
from computebill.jobs import JobContext, JobPublisher, JobRequest
from computebill.payments.gateway import StripeGateway


def job_context(settings: Settings, sessions: Sessions, publisher: JobPublisher) -> JobContext:
    """A job's context as the worker builds it (`computebill.worker.runtime`) from `settings`:
    the system clock, Stripe as the settings say, and simulated machines that boot at once."""
    clock = SystemClock()
    return JobContext(
        settings=settings,
        sessionmaker=sessions,
        publisher=publisher,
        worker_id="test",
        clock=clock,
        gateway=StripeGateway(settings),
        provider=SimulatedProvider(sessions, clock=clock, boot_seconds=(0, 0)),
    )


class RecordingPublisher:
    """A publisher that keeps what is sent to it."""

    def __init__(self) -> None:
        self.sent: list[JobRequest] = []

    async def publish(self, requests: list[JobRequest]) -> None:
        self.sent.extend(requests)

    async def queued(self) -> int:
        return len(self.sent)
