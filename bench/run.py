"""Authentication benchmarks (issue 4): refresh and login throughput beside baselines of the run.

Run from the repository root: `.venv/bin/python -m bench.run` (or `make bench`). See
bench/README.md for what each figure means and what bounds it. It reports; it never fails on a
figure (exit status 0), but says plainly whether each aim was met.
"""

from __future__ import annotations

import asyncio
import os
import platform
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO

import bcrypt
import httpx

from bench.load import Limit, Measurement, Runner, machine_busy_seconds
from bench.services import AppFailedToStart, Servers, running_app, scratch_environment, servers

BCRYPT_ROUNDS = 12  # the policy's cost (DESIGN §6), as in production
BCRYPT_SAMPLES = 5
FLOOR_PATH = "/healthz"  # fixed JSON {"status":"ok"}, no I/O: the app's cheapest route
PROBE_EVERY_SECONDS = 0.05

FLOOR_LIMIT, FLOOR_WARMUP = Limit(requests=20_000, seconds=8.0), Limit(requests=200, seconds=1.0)
REFRESH_LIMIT, REFRESH_WARMUP = Limit(requests=5_000, seconds=10.0), Limit(100, 1.0)
LOGIN_LIMIT = Limit(requests=200, seconds=15.0)
SESSIONS_LIMIT = Limit(requests=32, seconds=60.0)  # setup: one session per refresh worker
REFRESH_CONCURRENCY = (1, 32)

AIM_REFRESH_RATIO = 0.25  # refresh ≥ a quarter of the floor at the same concurrency
AIM_LOGIN_RATIO = 0.80  # login ≥ 80 % of the bcrypt limit
AIM_PROBE_P99_MS = 50.0  # GET /healthz p99 during the login storm

LOAD_BOUND_CORES = 0.9  # the load generator is one process: near one core, it is the bound
MACHINE_BOUND_SHARE = 0.9  # near every core busy: the machine is the bound


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def progress(line: str) -> None:
    sys.stderr.write(f"… {line}\n")
    sys.stderr.flush()


# --- the machine and the bcrypt limit -------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def busy_cores_now(seconds: float = 1.0) -> float:
    """How many cores the machine keeps busy before we start: other work skews every figure."""
    before = machine_busy_seconds()
    time.sleep(seconds)
    return max(0.0, machine_busy_seconds() - before) / seconds


@dataclass(frozen=True, slots=True)
class BcryptTiming:
    cores: int
    check_seconds: float  # one bcrypt.checkpw, median of BCRYPT_SAMPLES
    parallel_rate: float  # checks per second with one thread per core, all at once

    @property
    def limit(self) -> float:
        """Logins per second if every core did nothing but bcrypt: cores ÷ one check's time."""
        return self.cores / self.check_seconds

    def limit_for(self, concurrency: int) -> float:
        """The same for `concurrency` logins at a time (each keeps at most one core busy)."""
        return min(concurrency, self.cores) / self.check_seconds


def time_bcrypt(rounds: int, cores: int) -> BcryptTiming:
    """Time bcrypt.checkpw at this cost here, in this process, alone and on every core at once."""
    password = secrets.token_urlsafe(18).encode()
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds))

    def check(_: int = 0) -> None:
        bcrypt.checkpw(password, hashed)

    times = []
    for _ in range(BCRYPT_SAMPLES):
        started = time.perf_counter()
        check()
        times.append(time.perf_counter() - started)
    checks = 2 * cores
    with ThreadPoolExecutor(cores) as pool:  # bcrypt releases the GIL
        started = time.perf_counter()
        list(pool.map(check, range(checks)))
        parallel_rate = checks / (time.perf_counter() - started)
    return BcryptTiming(cores, statistics.median(times), parallel_rate)


# --- requests -----------------------------------------------------------------------------


async def get_floor(client: httpx.AsyncClient, worker: int) -> None:
    (await client.get(FLOOR_PATH)).raise_for_status()


@dataclass(frozen=True, slots=True)
class Account:
    email: str
    password: str


class LogIn:
    """POST /auth/login for one account; keeps the refresh tokens it is given when asked to."""

    def __init__(self, account: Account, *, keep_tokens: bool = False) -> None:
        self._body = {"email": account.email, "password": account.password}
        self._keep = keep_tokens
        self.refresh_tokens: list[str] = []

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        response = await client.post("/api/v1/auth/login", json=self._body)
        response.raise_for_status()
        if self._keep:
            self.refresh_tokens.append(str(response.json()["refresh_token"]))


class RefreshChains:
    """Worker i refreshes session i, each time with the refresh token the last call returned."""

    def __init__(self, refresh_tokens: Sequence[str]) -> None:
        self._tokens = list(refresh_tokens)

    async def __call__(self, client: httpx.AsyncClient, worker: int) -> None:
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": self._tokens[worker]}
        )
        response.raise_for_status()
        self._tokens[worker] = str(response.json()["refresh_token"])


async def sign_up(base_url: str) -> Account:
    account = Account(
        email=f"bench-{secrets.token_hex(6)}@example.com", password=secrets.token_urlsafe(18)
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        body = {"email": account.email, "password": account.password, "name": "Benchmark"}
        (await client.post("/api/v1/auth/signup", json=body)).raise_for_status()
    return account


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    measurement: Measurement
    baseline: str = ""
    ratio: float | None = None


@dataclass(frozen=True, slots=True)
class Aim:
    text: str
    figure: str
    met: bool


@dataclass(frozen=True, slots=True)
class Results:
    rows: list[Row]
    aims: list[Aim]
    bcrypt: BcryptTiming


async def floor_phases(runner: Runner) -> dict[int, Measurement]:
    floor = {}
    for concurrency in REFRESH_CONCURRENCY:
        progress(f"floor GET {FLOOR_PATH}, concurrency {concurrency}")
        floor[concurrency] = await runner.run_phase(
            f"floor GET {FLOOR_PATH}", concurrency, get_floor, FLOOR_LIMIT, warmup=FLOOR_WARMUP
        )
    return floor


async def open_sessions(runner: Runner, account: Account, concurrency: int) -> list[str]:
    """Log in SESSIONS_LIMIT.requests times: one session (refresh-token chain) per worker."""
    progress(f"setup: log in {SESSIONS_LIMIT.requests} times")
    setup = LogIn(account, keep_tokens=True)
    await runner.run_phase("setup", concurrency, setup, SESSIONS_LIMIT)
    if len(setup.refresh_tokens) < max(REFRESH_CONCURRENCY):
        raise RuntimeError(f"only {len(setup.refresh_tokens)} sessions could be opened")
    return setup.refresh_tokens


async def refresh_phases(runner: Runner, refresh_tokens: list[str]) -> dict[int, Measurement]:
    chains = RefreshChains(refresh_tokens)
    refresh = {}
    for concurrency in REFRESH_CONCURRENCY:
        progress(f"POST /auth/refresh, concurrency {concurrency}")
        refresh[concurrency] = await runner.run_phase(
            "POST /auth/refresh", concurrency, chains, REFRESH_LIMIT, warmup=REFRESH_WARMUP
        )
    return refresh


async def login_phases(
    runner: Runner, account: Account, concurrencies: Sequence[int]
) -> tuple[dict[int, Measurement], dict[int, Measurement]]:
    """Each login phase with a GET /healthz probe beside it: (logins, probes) by concurrency."""
    log_in = LogIn(account)
    login, probes = {}, {}
    for concurrency in concurrencies:
        progress(f"POST /auth/login, concurrency {concurrency}, GET {FLOOR_PATH} probe beside it")
        probe_name = f"probe GET {FLOOR_PATH} during login c={concurrency}"
        async with runner.probe(probe_name, FLOOR_PATH, PROBE_EVERY_SECONDS) as probe:
            login[concurrency] = await runner.run_phase(
                "POST /auth/login", concurrency, log_in, LOGIN_LIMIT, warmup=Limit(concurrency, 5)
            )
        probes[concurrency] = probe.measurement()
    return login, probes


async def benchmark(runner: Runner, *, cores: int) -> Results:
    floor = await floor_phases(runner)
    account = await sign_up(runner.base_url)
    refresh = await refresh_phases(runner, await open_sessions(runner, account, 2 * cores))
    progress(f"timing bcrypt at cost {BCRYPT_ROUNDS} in this process (the app idle)")
    bcrypt_timing = await asyncio.to_thread(time_bcrypt, BCRYPT_ROUNDS, cores)
    login, probes = await login_phases(runner, account, (1, 2 * cores))
    return compare(floor, refresh, login, probes, bcrypt_timing)


def compare(
    floor: dict[int, Measurement],
    refresh: dict[int, Measurement],
    login: dict[int, Measurement],
    probes: dict[int, Measurement],
    bcrypt_timing: BcryptTiming,
) -> Results:
    """The table's rows, each beside its baseline, and whether each aim of the issue was met."""
    rows = [Row(measured) for measured in floor.values()]
    aims = []
    for concurrency, measured in refresh.items():
        base = floor[concurrency].throughput
        ratio = measured.throughput / base
        rows.append(Row(measured, f"{base:.0f}/s floor c={concurrency}", ratio))
        text = f"refresh c={concurrency} >= {AIM_REFRESH_RATIO:.2f} x floor c={concurrency}"
        aims.append(Aim(text, f"{ratio:.2f}", ratio >= AIM_REFRESH_RATIO))
    storm = max(login)
    for concurrency, measured in login.items():
        limit = bcrypt_timing.limit_for(concurrency)
        ratio = measured.throughput / limit
        busy = min(concurrency, bcrypt_timing.cores)
        rows.append(Row(measured, f"{limit:.2f}/s bcrypt x{busy} cores", ratio))
        if concurrency == storm:
            text = f"login c={concurrency} >= {AIM_LOGIN_RATIO:.0%} of the bcrypt limit"
            aims.append(Aim(text, f"{ratio:.2f}", ratio >= AIM_LOGIN_RATIO))
    for concurrency, probe in probes.items():
        p99 = probe.percentile_ms(99)
        rows.append(Row(probe, f"{AIM_PROBE_P99_MS:.0f} ms p99 aim", p99 / AIM_PROBE_P99_MS))
        if concurrency == storm:
            text = f"GET {FLOOR_PATH} p99 during login c={concurrency} < {AIM_PROBE_P99_MS:.0f} ms"
            aims.append(Aim(text, f"{p99:.1f} ms", p99 < AIM_PROBE_P99_MS))
    errors = sum(row.measurement.errors for row in rows)
    aims.append(Aim("every request succeeded", f"{errors} errors", errors == 0))
    return Results(rows, aims, bcrypt_timing)


# --- the report -----------------------------------------------------------------------------

HEADERS = (
    "name",
    "conc",
    "requests",
    "errors",
    "req/s",
    "p50 ms",
    "p99 ms",
    "app RSS MiB",
    "app CPU ms/req",
    "app cores",
    "load cores",
    "other cores",
    "baseline",
    "ratio",
)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_cells(row: Row) -> tuple[str, ...]:
    m = row.measurement
    rss = None if m.app_rss_bytes is None else m.app_rss_bytes / 2**20
    return (
        m.name,
        str(m.concurrency),
        str(m.requests),
        str(m.errors),
        f"{m.throughput:.1f}",
        f"{m.percentile_ms(50):.2f}",
        f"{m.percentile_ms(99):.2f}",
        _number(rss, 1),
        _number(m.app_cpu_ms_per_request, 2),
        _number(m.app_cores, 2),
        _number(m.load_cores, 2),
        _number(m.other_cores, 2),
        row.baseline or "-",
        _number(row.ratio, 2),
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cells[i]) for cells in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in (0, len(cells) - 2) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]


def bound_notes(rows: Sequence[Row], cores: int) -> list[str]:
    """Rows whose figure was bounded by the load generator or by the whole machine, not the app."""
    notes = []
    for row in rows:
        m = row.measurement
        where = f"{m.name} c={m.concurrency}"
        if m.load_cores is not None and m.load_cores >= LOAD_BOUND_CORES:
            notes.append(
                f"{where}: the load generator used {m.load_cores:.2f} core (it is one Python "
                "process): this rate is its limit, not the app's; compare app CPU ms/req instead"
            )
        elif m.machine_cores is not None and m.machine_cores >= MACHINE_BOUND_SHARE * cores:
            notes.append(
                f"{where}: all {cores} cores were busy, {m.other_cores:.2f} of them with "
                "PostgreSQL, Redis and other work"
            )
    return notes


def report(results: Results) -> None:
    for text in format_table(HEADERS, [table_cells(row) for row in results.rows]):
        say(text)
    say()
    timing = results.bcrypt
    say(
        f"bcrypt at cost {BCRYPT_ROUNDS}, timed in the load process just before the logins: "
        f"one checkpw {timing.check_seconds * 1000:.0f} ms (median of {BCRYPT_SAMPLES}) -> "
        f"limit {timing.cores} / {timing.check_seconds:.3f} s = {timing.limit:.2f} logins/s; "
        f"{timing.cores} threads at once managed {timing.parallel_rate:.2f} checks/s "
        f"({timing.parallel_rate / timing.limit:.0%} of that limit)"
    )
    say()
    say("Aims (issue 4):")
    for aim in results.aims:
        say(f"  [{'met' if aim.met else 'NOT MET':7}] {aim.text}: {aim.figure}")
    for note in bound_notes(results.rows, results.bcrypt.cores):
        say(f"  note: {note}")
    for row in results.rows:
        if row.measurement.first_error is not None:
            say(f"  first error in {row.measurement.name!r}: {row.measurement.first_error}")


def header(cores: int, busy_before: float, servers: Servers) -> None:
    say("Compute Billing Platform: authentication benchmarks")
    say(f"date:     {datetime.now(UTC).isoformat(timespec='seconds')}")
    say(f"machine:  {cores} cores, {cpu_model()}, {platform.platform()}")
    say(f"          {busy_before:.2f} cores busy with other work just before the run")
    say(f"python:   {platform.python_version()} ({sys.executable})")
    say(f"services: {servers.origin}; app: `computebill app`, 1 process, separate from the load")
    say(
        f"floor:    GET {FLOOR_PATH} (fixed JSON body, no I/O); the platform has no bare "
        "fixed-JSON endpoint, so this is the floor"
    )
    say()


async def run(servers: Servers, app_log: IO[bytes], *, cores: int) -> None:
    progress("creating and migrating a throwaway database")
    async with (
        scratch_environment(servers, bcrypt_rounds=BCRYPT_ROUNDS) as settings,
        running_app(settings, app_log) as app,
    ):
        results = await benchmark(Runner(app.base_url, app.pid), cores=cores)
    report(results)


def show_app_log(app_log: IO[bytes], lines: int = 5) -> None:
    app_log.seek(0)
    logged = app_log.read().decode(errors="replace").splitlines()
    if logged:
        say(f"\nThe app logged {len(logged)} lines at warning or above; the first {lines}:")
        for line in logged[:lines]:
            say(f"  {line}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # clean up as on Ctrl-C: stop the app, drop the database


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    cores = usable_cores()
    busy_before = busy_cores_now()
    with ExitStack() as stack:
        workdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="computebill-bench-"))
        )
        app_log = stack.enter_context((workdir / "app.log").open("w+b"))
        progress("starting services")
        services = stack.enter_context(servers(workdir))
        header(cores, busy_before, services)
        try:
            asyncio.run(run(services, app_log, cores=cores))
        except AppFailedToStart as error:
            say(f"The app did not start: {error}")
            show_app_log(app_log, lines=40)
            return 1
        except KeyboardInterrupt:
            say("Interrupted; the app is stopped and the throwaway database dropped.")
            return 130
        show_app_log(app_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
