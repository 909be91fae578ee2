"""Closed-loop load from this process, and what one phase of it measured.

Every phase runs `concurrency` workers, each sending one request at a time and the next as soon as
the previous one is answered, until the phase has sent `limit.requests` requests or run for
`limit.seconds`, whichever comes first. A short warm-up of the same kind (connections opened,
pools filled) runs before it and is not counted. A "request" is whatever the phase's callable
does: one HTTP call, a whole purchase, or asking for an order's provisioning and waiting until
its machines run; it fails by raising (an HTTP error, `RequestFailed`, or a timeout).

While a phase runs, the app's resident memory is sampled every second, and the CPU time of the
app, of any worker processes being watched, of this process and of the whole machine is taken
before and after it.

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
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass

import httpx
import psutil  # type: ignore[import-untyped]

# Sends one request on the client as worker number `worker`; raises when it did not succeed.
MakeRequest = Callable[[httpx.AsyncClient, int], Awaitable[None]]

REQUEST_TIMEOUT_SECONDS = 30.0
RSS_SAMPLE_SECONDS = 1.0
USER_AGENT = "computebill-bench"


class RequestFailed(Exception):
    """A request that got an answer, but not the one it needed (a wrong body, a missing row)."""


# What counts as one failed request rather than a failure of the whole benchmark.
REQUEST_ERRORS = (httpx.HTTPError, ValueError, KeyError, RequestFailed, TimeoutError)


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


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    """CPU time these processes have used so far (a process that has gone counts nothing)."""
    total = 0.0
    for process in processes:
        with suppress(psutil.NoSuchProcess):
            total += Usage.of(process).cpu_seconds
    return total


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent on anything but idling, so far."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass(frozen=True, slots=True)
class Rss:
    """The app's resident memory over a phase: at its start, the most seen, at its end."""

    start: int
    peak: int
    end: int


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    concurrency: int
    latencies: tuple[float, ...]  # seconds, one per successful request
    errors: int
    first_error: str | None
    seconds: float  # wall time of the phase
    app_rss: Rss | None = None  # sampled every RSS_SAMPLE_SECONDS during the phase
    app_cores: float | None = None  # CPU time the app used ÷ wall time
    worker_cores: float | None = None  # the same for the worker processes watched (None: none)
    load_cores: float | None = None  # the same for this (the load generator's) process
    machine_cores: float | None = None  # the same for everything on the machine

    @property
    def server_cores(self) -> float | None:
        """The platform's own processes: the app and any workers."""
        if self.app_cores is None:
            return None
        return self.app_cores + (self.worker_cores or 0.0)

    @property
    def other_cores(self) -> float | None:
        """Cores busy with neither the platform nor the load: PostgreSQL, Redis, anything else."""
        if self.machine_cores is None or self.server_cores is None or self.load_cores is None:
            return None
        return max(0.0, self.machine_cores - self.server_cores - self.load_cores)

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        """The app's (and workers') CPU time per successful request: what one costs the
        platform, whatever bounds the throughput."""
        if self.server_cores is None or not self.latencies:
            return None
        return self.server_cores * self.seconds / len(self.latencies) * 1000

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
            except REQUEST_ERRORS as error:
                tally.failed(error)
            else:
                tally.latencies.append(time.perf_counter() - sent)

    async with asyncio.TaskGroup() as group:
        for index in range(len(clients)):
            group.create_task(worker(index))
    return tally, time.perf_counter() - started


class _RssSampler:
    """The app's resident memory, every `every` seconds while it runs (and once at each end)."""

    def __init__(self, process: psutil.Process, every: float) -> None:
        self._process = process
        self._every = every
        self._samples: list[int] = []

    def sample(self) -> None:
        with suppress(psutil.NoSuchProcess):
            self._samples.append(self._process.memory_info().rss)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            self.sample()

    def result(self) -> Rss | None:
        if not self._samples:
            return None
        return Rss(start=self._samples[0], peak=max(self._samples), end=self._samples[-1])


class Runner:
    """Runs phases against one app process (and the workers it is told to watch) and measures
    them."""

    def __init__(self, base_url: str, app_pid: int) -> None:
        self.base_url = base_url
        self._app = psutil.Process(app_pid)
        self._self = psutil.Process()
        self._workers: list[psutil.Process] = []

    def app_usage(self) -> Usage:
        return Usage.of(self._app)

    def watch_workers(self, pids: Sequence[int]) -> None:
        """Count these worker processes' CPU time in the phases that follow."""
        self._workers = [psutil.Process(pid) for pid in pids]

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
            workers = list(self._workers)
            rss = _RssSampler(self._app, RSS_SAMPLE_SECONDS)
            rss.sample()
            sampler = asyncio.create_task(rss.run())
            app_before, load_before = self.app_usage(), Usage.of(self._self)
            workers_before, machine_before = cpu_seconds(workers), machine_busy_seconds()
            try:
                tally, seconds = await _drive(clients, make_request, limit)
            finally:
                sampler.cancel()
                await asyncio.gather(sampler, return_exceptions=True)
            app_after, load_after = self.app_usage(), Usage.of(self._self)
            workers_after, machine_after = cpu_seconds(workers), machine_busy_seconds()
            rss.sample()
        return Measurement(
            name=name,
            concurrency=concurrency,
            latencies=tuple(tally.latencies),
            errors=tally.errors,
            first_error=tally.first_error,
            seconds=seconds,
            app_rss=rss.result(),
            app_cores=(app_after.cpu_seconds - app_before.cpu_seconds) / seconds,
            worker_cores=(workers_after - workers_before) / seconds if workers else None,
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
