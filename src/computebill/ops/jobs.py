"""Background jobs of the operations domain."""

from __future__ import annotations

import os
import socket

from computebill.db import unit_of_work
from computebill.jobs import JobContext
from computebill.ops import service


async def record_worker_heartbeat(ctx: JobContext) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.publisher) as session:
        await service.record_heartbeat(
            session, worker_id=ctx.worker_id, hostname=socket.gethostname(), pid=os.getpid()
        )
