"""Closed-loop HTTP load from this process, and what one phase of it measured.

Every phase runs `concurrency` workers, each sending one request at a time and the next as soon as
the previous one is answered, until the phase has sent `limit.requests` requests or run for
`limit.seconds`, whichever comes first. A short warm-up of the same kind (connections opened,
pools filled) runs before it and is not counted.

Each worker has an `httpx.AsyncClient` (one keep-alive connection) of its own: one client shared
by 32 workers spends most of its time in its connection pool and drives the app at less than half
the rate (measured here: 190 against 460-580 requests/s for GET /healthz).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
import psutil  # type: ignore[import-untyped]

# Sends one request on the client as worker number `worker`; raises when it did not succeed.
MakeRequest = Callable[[httpx.AsyncClient, int], Awaitable[None]]

REQUEST_TIMEOUT_SECONDS = 30.0
USER_AGENT = "computebill-bench"


@dataclass(frozen=True, slots=True)
class Limit:
    """A phase ends after this many requests or this many seconds, whichever comes first."""

    requests: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Usage:
    """A process's resident memory and the CPU time it has used so far."""

    rss_bytes: int
    cpu_seconds: float

    @classmethod
    def of(cls, process: psutil.Process) -> Usage:
        with process.oneshot():
            times = process.cpu_times()
            return cls(rss_bytes=process.memory_info().rss, cpu_seconds=times.user + times.system)


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent on anything but idling, so far."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    concurrency: int
    latencies: tuple[float, ...]  # seconds, one per successful request
    errors: int
    first_error: str | None
    seconds: float  # wall time of the phase
    app_rss_bytes: int | None = None  # after the phase
    app_cores: float | None = None  # CPU time the app used ÷ wall time
    load_cores: float | None = None  # the same for this (the load generator's) process
    machine_cores: float | None = None  # the same for everything on the machine

    @property
    def other_cores(self) -> float | None:
        """Cores busy with neither the app nor the load: PostgreSQL, Redis and anything else."""
        if self.machine_cores is None or self.app_cores is None or self.load_cores is None:
            return None
        return max(0.0, self.machine_cores - self.app_cores - self.load_cores)

    @property
    def app_cpu_ms_per_request(self) -> float | None:
        """The app's CPU time per successful request: its cost, whatever bounds the throughput."""
        if self.app_cores is None or not self.latencies:
            return None
        return self.app_cores * self.seconds / len(self.latencies) * 1000

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, percent: float) -> float:
        """Nearest-rank percentile of the successful requests' latencies, in milliseconds."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(percent / 100 * len(ordered)))
        return ordered[rank - 1] * 1000


def http_client(base_url: str, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=REQUEST_TIMEOUT_SECONDS,
        headers={"User-Agent": USER_AGENT},
    )


@dataclass(slots=True)
class _Tally:
    latencies: list[float]
    errors: int = 0
    first_error: str | None = None

    def failed(self, error: Exception) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(error).__name__}: {error}"


async def _drive(
    clients: Sequence[httpx.AsyncClient], make_request: MakeRequest, limit: Limit
) -> tuple[_Tally, float]:
    """Run the closed loop; return what happened and the wall time it took."""
    tally = _Tally(latencies=[])
    tickets = itertools.count()
    started = time.perf_counter()
    deadline = started + limit.seconds

    async def worker(index: int) -> None:
        while next(tickets) < limit.requests and time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                await make_request(clients[index], index)
            except (httpx.HTTPError, ValueError, KeyError) as error:
                tally.failed(error)
            else:
                tally.latencies.append(time.perf_counter() - sent)

    async with asyncio.TaskGroup() as group:
        for index in range(len(clients)):
            group.create_task(worker(index))
    return tally, time.perf_counter() - started


class Runner:
    """Runs phases against one app process and measures them."""

    def __init__(self, base_url: str, app_pid: int) -> None:
        self.base_url = base_url
        self._app = psutil.Process(app_pid)
        self._self = psutil.Process()

    def app_usage(self) -> Usage:
        return Usage.of(self._app)

    async def run_phase(
        self,
        name: str,
        concurrency: int,
        make_request: MakeRequest,
        limit: Limit,
        *,
        warmup: Limit | None = None,
    ) -> Measurement:
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(http_client(self.base_url, 1))
                for _ in range(concurrency)
            ]
            if warmup is not None:
                await _drive(clients, make_request, warmup)
            app_before, load_before = self.app_usage(), Usage.of(self._self)
            machine_before = machine_busy_seconds()
            tally, seconds = await _drive(clients, make_request, limit)
            app_after, load_after = self.app_usage(), Usage.of(self._self)
            machine_after = machine_busy_seconds()
        return Measurement(
            name=name,
            concurrency=concurrency,
            latencies=tuple(tally.latencies),
            errors=tally.errors,
            first_error=tally.first_error,
            seconds=seconds,
            app_rss_bytes=app_after.rss_bytes,
            app_cores=(app_after.cpu_seconds - app_before.cpu_seconds) / seconds,
            load_cores=(load_after.cpu_seconds - load_before.cpu_seconds) / seconds,
            machine_cores=(machine_after - machine_before) / seconds,
        )

    @asynccontextmanager
    async def probe(self, name: str, path: str, every: float) -> AsyncIterator[Probe]:
        """Poll GET `path` every `every` seconds on a connection of its own while the block runs."""
        probe = Probe(name)
        async with http_client(self.base_url, 1) as client:
            task = asyncio.create_task(probe.poll(client, path, every))
            try:
                yield probe
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


class Probe:
    """Latencies of a request sent at a steady pace (open loop), e.g. a liveness check."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tally = _Tally(latencies=[])
        self._started = time.perf_counter()

    async def poll(self, client: httpx.AsyncClient, path: str, every: float) -> None:
        self._started = time.perf_counter()
        while True:
            sent = time.perf_counter()
            try:
                (await client.get(path)).raise_for_status()
            except httpx.HTTPError as error:
                self._tally.failed(error)
            else:
                self._tally.latencies.append(time.perf_counter() - sent)
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - sent)))

    def measurement(self) -> Measurement:
        return Measurement(
            name=self._name,
            concurrency=1,
            latencies=tuple(self._tally.latencies),
            errors=self._tally.errors,
            first_error=self._tally.first_error,
            seconds=time.perf_counter() - self._started,
        )
