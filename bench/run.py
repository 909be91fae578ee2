"""The platform's benchmarks, each beside a baseline measured in the same run.

The `wrk` group (issue 14, a default): `computebill app --workers auto` driven by wrk, row by
row, with the app's CPU per request (bench/wrk_phases.py). The `metering` group (issue 15, a
default): settlement passes over 10,000 running pay-as-you-go instances, and the credit cap's
latency with a real worker (bench/metering.py). The in-process groups (issues 4-7, run
when named in `--only`): authentication, the catalog, cart adds and checkout creation, the orders
list, the Stripe webhook, payment-to-paid latency and provisioning throughput, driven by httpx
from this process against one app process; they end with one table: every phase's throughput,
p50, p99, the app's peak RSS, its baseline, the ratio, its aims, whether met.

Run from the repository root: `.venv/bin/python -m bench.run` (or `make bench`). See
bench/README.md for what each figure means and what bounds it. It reports; it never fails on a
figure (exit status 0), but says plainly whether each aim was met.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO

import httpx

from bench.console import console_lists, print_console
from bench.database import (
    LineSpec,
    Watcher,
    count_events,
    empty_carts,
    insert_paid_orders,
    instance_counts,
    orders_running,
    paid_orders,
    payment_times,
    user_id,
)
from bench.load import Limit, Measurement, Runner
from bench.machine import BCRYPT_SAMPLES, busy_cores_now, cpu_model, time_bcrypt, usable_cores
from bench.metering import cap_latency, print_metering, settlement_passes
from bench.report import Aim, Row, Section, progress, report, say
from bench.services import (
    WORKER_SETTINGS,
    Environment,
    Server,
    Servers,
    ServiceFailedToStart,
    running_app,
    running_emulator,
    running_worker,
    scratch_environment,
    servers,
)
from bench.workloads import (
    Account,
    Call,
    CartAdds,
    Checkouts,
    LogIn,
    Provisioning,
    Purchases,
    RefreshChains,
    SignedEvents,
    bearer,
    sign_up,
)
from bench.wrk import Wrk
from bench.wrk_phases import Timing, wrk_group
from computebill.devserver.scratch import Sessions, database
from computebill.instances.models import InstanceStatus
from computebill.queue.publisher import AppQueuePublisher

FLOOR_PATH = "/healthz"  # fixed JSON {"status":"ok"}, no I/O: the app's cheapest route
CONCURRENCY = (1, 32)  # the floor's; 32 is the issues' concurrency for every throughput aim
C = 32

FLOOR_LIMIT, FLOOR_WARMUP = Limit(requests=20_000, seconds=8.0), Limit(requests=200, seconds=1.0)

# Issue 4: authentication.
BCRYPT_ROUNDS = 12  # the policy's cost (docs/architecture.md §6), as in production
PROBE_EVERY_SECONDS = 0.05
REFRESH_LIMIT, REFRESH_WARMUP = Limit(requests=5_000, seconds=8.0), Limit(100, 1.0)
LOGIN_LIMIT = Limit(requests=200, seconds=10.0)
SESSIONS_LIMIT = Limit(requests=32, seconds=60.0)  # setup: one session per refresh worker
AIM_REFRESH_RATIO = 0.25  # refresh ≥ a quarter of the floor at the same concurrency
AIM_LOGIN_RATIO = 0.80  # login ≥ 80 % of the bcrypt limit
AIM_PROBE_P99_MS = 50.0  # GET /healthz p99 during the login storm

# Issue 5: the catalog.
CATALOG_LIMIT, CATALOG_WARMUP = Limit(requests=5_000, seconds=8.0), Limit(200, 1.0)
QUOTE = {"gpu": "nvidia-h100", "gpu_count": 8, "vcpus": 96, "storage_gb": 2000, "hours": 10}
AIM_CATALOG_RATIO = 0.70

# The cart and checkout (no targets: compared with the floor).
CART_VARIANTS = 12  # configurations per shopper: at most 12 lines, 12 x 8 adds before it is full
CART_LIMIT = Limit(requests=2_000, seconds=8.0)  # about 63 adds per shopper, at most 96 fit
CHECKOUT_LIMIT = Limit(requests=2_000, seconds=8.0)

# Issue 6: orders, the webhook, payment-to-paid.
ORDERS_IN_LIST = 20
ORDER_LINES = (
    LineSpec("nvidia-h100", gpu_count=8, vcpus=96, storage_gb=2000, hours=10, quantity=1),
    LineSpec("amd-mi300x", gpu_count=4, vcpus=48, storage_gb=1000, hours=24, quantity=1),
)
ORDERS_LIMIT, ORDERS_WARMUP = Limit(requests=5_000, seconds=8.0), Limit(200, 1.0)
AIM_ORDERS_RATIO = 0.25
WEBHOOK_LIMIT, WEBHOOK_WARMUP = Limit(requests=30_000, seconds=60.0), Limit(200, 1.0)
AIM_WEBHOOK_RATIO = 1 / 3
AIM_WEBHOOK_P99_MS = 50.0
AIM_RSS_GROWTH = 0.05  # "flat": the end at most 5 % above the start
PURCHASE_ITEM = {"gpu": "nvidia-h100", "gpu_count": 1, "vcpus": 12, "storage_gb": 100, "hours": 1}
PURCHASE_LIMIT = Limit(requests=20, seconds=90.0)
PAID_WAIT_SECONDS = 30.0
PAID_WATCH_SECONDS = 0.02  # how often the load looks for paid orders (at most 2 x cores wait)
RUNNING_WATCH_SECONDS = 0.05  # how often it looks for provisioned orders

# Issue 7: provisioning.
PROVISION_ORDERS, PROVISION_WARMUP_ORDERS = 50, 2
PROVISION_LINES = (
    LineSpec("nvidia-h100", gpu_count=8, vcpus=96, storage_gb=2000, hours=10, quantity=2),
    LineSpec("nvidia-a100", gpu_count=1, vcpus=12, storage_gb=100, hours=10, quantity=2),
)
PROVISION_LIMIT = Limit(requests=PROVISION_ORDERS, seconds=60.0)
SETTLE_SECONDS = 30.0  # at most, for earlier provisioning to finish before a phase

# Load from this process (httpx), against one app process: issues 4-7.
HTTPX_GROUPS = ("auth", "catalog", "cart", "orders", "workers", "webhooks")
# wrk (issue 14), metering (15) and console (18): what `make bench` runs
GROUPS = (*HTTPX_GROUPS, "wrk", "metering", "console")
DEFAULT_GROUPS = ("wrk", "metering", "console")
QUIET_WAIT_SECONDS, QUIET_CORES = 10.0, 0.25


# --- comparing ------------------------------------------------------------------------------

Floor = dict[int, Measurement]


def no_target(issue: int | None) -> Aim:
    """What a row's aim cell says when the issue asks for the figure without a target."""
    return Aim(issue, "no target", None, None)


def aim_at(reached: bool | None, issue: int | None, text: str) -> Aim:
    """The aim where it applies (`reached` is whether it was met), else no target (None)."""
    return no_target(issue) if reached is None else Aim(issue, text, None, reached)


def against_floor(
    measured: Measurement, floor: Floor, aim_ratio: float | None, issue: int | None
) -> Row:
    """The row beside the floor at the same concurrency, and whether it reached `aim_ratio`
    (None: the row has no target, only the figure)."""
    c = measured.concurrency
    base = floor[c].throughput
    ratio = measured.throughput / base
    reached = None if aim_ratio is None else ratio >= aim_ratio
    aim = aim_at(reached, issue, f"ratio >= {aim_ratio or 0:.2f}")
    return Row(measured, f"{base:.0f}/s floor c={c}", ratio, (aim,))


# --- the floor ------------------------------------------------------------------------------


async def floor_phases(runner: Runner) -> tuple[Floor, Section]:
    floor = {}
    for concurrency in CONCURRENCY:
        progress(f"floor GET {FLOOR_PATH}, concurrency {concurrency}")
        floor[concurrency] = await runner.run_phase(
            f"floor GET {FLOOR_PATH}",
            concurrency,
            Call("GET", FLOOR_PATH),
            FLOOR_LIMIT,
            warmup=FLOOR_WARMUP,
        )
    return floor, Section(rows=[Row(measured) for measured in floor.values()])


# --- issue 4: authentication ----------------------------------------------------------------


async def open_sessions(runner: Runner, account: Account, concurrency: int) -> list[str]:
    """Log in SESSIONS_LIMIT.requests times: one session (refresh-token chain) per worker."""
    progress(f"setup: log in {SESSIONS_LIMIT.requests} times")
    setup = LogIn(account, keep_tokens=True)
    await runner.run_phase("setup", concurrency, setup, SESSIONS_LIMIT)
    if len(setup.refresh_tokens) < max(CONCURRENCY):
        raise RuntimeError(f"only {len(setup.refresh_tokens)} sessions could be opened")
    return setup.refresh_tokens


async def auth_phases(runner: Runner, floor: Floor, *, cores: int) -> Section:
    section = Section()
    account = await sign_up(runner.base_url)
    chains = RefreshChains(await open_sessions(runner, account, 2 * cores))
    for concurrency in CONCURRENCY:
        progress(f"POST /auth/refresh, concurrency {concurrency}")
        measured = await runner.run_phase(
            "POST /auth/refresh", concurrency, chains, REFRESH_LIMIT, warmup=REFRESH_WARMUP
        )
        section.rows.append(against_floor(measured, floor, AIM_REFRESH_RATIO, 4))

    progress(f"timing bcrypt at cost {BCRYPT_ROUNDS} in this process (the app idle)")
    timing = await asyncio.to_thread(time_bcrypt, BCRYPT_ROUNDS, cores)
    log_in, storm = LogIn(account), 2 * cores
    probes = []
    for concurrency in (1, storm):
        progress(f"POST /auth/login, concurrency {concurrency}, GET {FLOOR_PATH} probe beside it")
        probe_name = f"probe GET {FLOOR_PATH} during login c={concurrency}"
        async with runner.probe(probe_name, FLOOR_PATH, PROBE_EVERY_SECONDS) as probe:
            measured = await runner.run_phase(
                "POST /auth/login", concurrency, log_in, LOGIN_LIMIT, warmup=Limit(concurrency, 5)
            )
        limit = timing.limit_for(concurrency)
        ratio = measured.throughput / limit
        busy = min(concurrency, timing.cores)
        reached = ratio >= AIM_LOGIN_RATIO if concurrency == storm else None
        aim = aim_at(reached, 4, f"ratio >= {AIM_LOGIN_RATIO:.2f}")
        section.rows.append(Row(measured, f"{limit:.2f}/s bcrypt x{busy} cores", ratio, (aim,)))
        probes.append((concurrency, probe.measurement()))
    for concurrency, measured in probes:
        p99 = measured.percentile_ms(99)
        reached = p99 < AIM_PROBE_P99_MS if concurrency == storm else None
        aim = aim_at(reached, 4, f"p99 < {AIM_PROBE_P99_MS:.0f} ms")
        section.rows.append(
            Row(measured, f"{AIM_PROBE_P99_MS:.0f} ms p99 aim", p99 / AIM_PROBE_P99_MS, (aim,))
        )
    section.notes.append(
        f"bcrypt at cost {BCRYPT_ROUNDS}, timed in the load process just before the logins: "
        f"one checkpw {timing.check_seconds * 1000:.0f} ms (median of {BCRYPT_SAMPLES}) -> "
        f"limit {timing.cores} / {timing.check_seconds:.3f} s = {timing.limit:.2f} logins/s; "
        f"{timing.cores} threads at once managed {timing.parallel_rate:.2f} checks/s "
        f"({timing.parallel_rate / timing.limit:.0%} of that limit)"
    )
    return section


# --- issue 5: the catalog -------------------------------------------------------------------


async def catalog_phases(runner: Runner, floor: Floor) -> Section:
    section = Section()
    for name, call in (
        ("GET /api/v1/gpus", Call("GET", "/api/v1/gpus")),
        ("POST /api/v1/quotes", Call("POST", "/api/v1/quotes", json=QUOTE)),
    ):
        progress(f"{name}, concurrency {C}")
        measured = await runner.run_phase(name, C, call, CATALOG_LIMIT, warmup=CATALOG_WARMUP)
        section.rows.append(against_floor(measured, floor, AIM_CATALOG_RATIO, 5))
    return section


# --- the cart and checkout ------------------------------------------------------------------


async def cart_phases(
    runner: Runner, environment: Environment, db: Sessions, logs: Logs, floor: Floor
) -> Section:
    """Cart adds, then checkouts against the Stripe emulator, each worker as a shopper of its
    own (a cart is locked while it changes, so shared carts would measure the lock)."""
    progress(f"setup: {C} shoppers sign up (bcrypt at cost {BCRYPT_ROUNDS} each)")
    shoppers = await asyncio.gather(*(sign_up(runner.base_url, db) for _ in range(C)))
    tokens = [shopper.access_token for shopper in shoppers]
    section = Section()
    name = "POST /api/v1/cart/items"
    progress(f"{name}, concurrency {C}")
    adds = CartAdds(tokens, PURCHASE_ITEM, CART_VARIANTS)
    measured = await runner.run_phase(name, C, adds, CART_LIMIT, warmup=Limit(C, 10.0))
    section.rows.append(against_floor(measured, floor, None, None))

    await empty_carts(db, [await user_id(db, shopper.email) for shopper in shoppers])
    progress("setup: one line in each shopper's cart")
    await runner.run_phase("setup", C, CartAdds(tokens, PURCHASE_ITEM, 1), Limit(C, 30.0))
    name = "POST /api/v1/checkout (emulator)"
    progress("starting the Stripe emulator")
    async with running_emulator(environment, logs.directory / "emulator-checkout", logs.emulator):
        progress(f"{name}, concurrency {C}")
        measured = await runner.run_phase(
            name, C, Checkouts(tokens), CHECKOUT_LIMIT, warmup=Limit(C, 30.0)
        )
    section.rows.append(against_floor(measured, floor, None, None))
    section.notes.append(
        f"{name}: each of {C} shoppers checks out a cart of one line, left as it is, with an "
        "Idempotency-Key per request, so every request makes a new pending order and a new "
        "Checkout Session on the emulator (the warm-up made each shopper's Stripe Customer). "
        f"Cart adds cycle through {CART_VARIANTS} configurations per shopper: the first "
        f"{CART_VARIANTS} insert a line, the rest raise a line's quantity."
    )
    return section


# --- issue 6: the orders list ---------------------------------------------------------------


async def orders_phase(runner: Runner, db: Sessions, floor: Floor) -> Section:
    progress(f"setup: an account with {ORDERS_IN_LIST} paid orders of {len(ORDER_LINES)} lines")
    account = await sign_up(runner.base_url)
    await insert_paid_orders(db, await user_id(db, account.email), ORDERS_IN_LIST, ORDER_LINES)
    list_orders = Call("GET", "/api/v1/orders", headers=bearer(account.access_token))
    async with httpx.AsyncClient(base_url=runner.base_url, timeout=30.0) as client:
        page = await client.get("/api/v1/orders", headers=bearer(account.access_token))
        page.raise_for_status()
        if len(page.json()["orders"]) != ORDERS_IN_LIST:
            raise RuntimeError(f"GET /api/v1/orders lists {len(page.json()['orders'])} orders")
    name = f"GET /api/v1/orders ({ORDERS_IN_LIST} x {len(ORDER_LINES)} lines)"
    progress(f"{name}, concurrency {C}")
    measured = await runner.run_phase(name, C, list_orders, ORDERS_LIMIT, warmup=ORDERS_WARMUP)
    return Section(rows=[against_floor(measured, floor, AIM_ORDERS_RATIO, 6)])


# --- issue 6: the webhook -------------------------------------------------------------------


async def webhook_phase(
    runner: Runner, environment: Environment, db: Sessions, floor: Floor
) -> Section:
    name = "POST /webhooks/stripe"
    progress(f"{name} (signed, new ids), concurrency {C}, no worker running")
    events = SignedEvents(environment.webhook_secret)
    measured = await runner.run_phase(name, C, events, WEBHOOK_LIMIT, warmup=WEBHOOK_WARMUP)
    stored = await count_events(db, SignedEvents.ID_PREFIX)
    row = against_floor(measured, floor, AIM_WEBHOOK_RATIO, 6)
    p99 = measured.percentile_ms(99)
    aims = [
        *row.aims,
        Aim(6, f"p99 < {AIM_WEBHOOK_P99_MS:.0f} ms", None, p99 < AIM_WEBHOOK_P99_MS),
        Aim(
            6,
            "every 200 stored",
            f"{stored} rows, {events.answered} 200s",
            stored == events.answered,
        ),
    ]
    rss = measured.app_rss
    if rss is not None:
        growth = (rss.end - rss.start) / rss.start
        aims.append(
            Aim(
                6,
                f"RSS end <= start + {AIM_RSS_GROWTH:.0%} ({measured.seconds:.0f} s)",
                f"{rss.start / 2**20:.1f} -> {rss.end / 2**20:.1f} MiB",
                growth <= AIM_RSS_GROWTH,
            )
        )
    section = Section(rows=[Row(measured, row.baseline, row.ratio, tuple(aims))])
    section.notes.append(
        f"{name}: events of type {SignedEvents.EVENT_TYPE}, which the platform stores and "
        "ignores; no worker ran, so their processing jobs stayed queued in Redis (removed with "
        "the namespace at the end). 'every 200 stored' counts the warm-up's events too."
    )
    return section


# --- issues 6 and 7: with workers -----------------------------------------------------------


async def settle(db: Sessions) -> None:
    """Until no instance is still provisioning (earlier work done), at most SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if (await instance_counts(db)).get(InstanceStatus.PROVISIONING, 0) == 0:
            return
        await asyncio.sleep(0.2)
    progress(f"warning: instances still provisioning after {SETTLE_SECONDS:.0f} s")


async def payment_phase(runner: Runner, db: Sessions, *, cores: int) -> Section:
    concurrency = 2 * cores
    progress(f"setup: {concurrency} shoppers sign up; one purchase each (not counted)")
    shoppers = await asyncio.gather(*(sign_up(runner.base_url, db) for _ in range(concurrency)))
    async with (
        httpx.AsyncClient(timeout=30.0, headers={"User-Agent": "computebill-bench"}) as browser,
        Watcher(db, paid_orders, PAID_WATCH_SECONDS).running() as paid,
    ):
        purchases = Purchases(
            [shopper.access_token for shopper in shoppers],
            PURCHASE_ITEM,
            browser,
            paid,
            PAID_WAIT_SECONDS,
        )
        await runner.run_phase("setup", concurrency, purchases, Limit(concurrency, 60.0))
        purchases.clear()
        progress(f"{PURCHASE_LIMIT.requests} purchases, {concurrency} at a time")
        measured = await runner.run_phase(
            "purchase: cart, checkout, pay, until paid", concurrency, purchases, PURCHASE_LIMIT
        )
    times = await payment_times(db, purchases.paid_seen_at)
    missing = len(purchases.paid_seen_at) - len(times)

    def derived(name: str, latencies: Sequence[float], errors: int = 0) -> Measurement:
        """A row of latencies taken in the purchase phase's window (whose costs its row has);
        its errors are paid orders whose timestamps are missing."""
        return Measurement(name, concurrency, tuple(latencies), errors, None, measured.seconds)

    in_database = derived(
        "payment-to-paid, DB: event stored -> paid",
        [(t.paid - t.event_stored).total_seconds() for t in times.values()],
        missing,
    )
    committed = derived(
        "payment-to-paid, event stored -> paid seen",
        [
            (purchases.paid_seen_at[order] - t.event_stored).total_seconds()
            for order, t in times.items()
        ],
        missing,
    )
    seen = derived("pay submitted -> paid seen", purchases.pay_to_paid)
    return Section(
        rows=[
            Row(row, aims=(no_target(6),), unit="purchases/s")
            for row in (measured, in_database, committed, seen)
        ],
        notes=[
            "Payment-to-paid: 'DB' is stripe_events.received_at of the checkout.session.completed "
            "event -> order_status_changes.changed_at (to paid), which the job takes from its "
            "clock when it starts; 'paid seen' ends when the load's query (every "
            f"{PAID_WATCH_SECONDS * 1000:.0f} ms) first saw the order paid, so it includes the "
            "Stripe retrieve and the commit; 'pay submitted' starts when the hosted page "
            "answered the card form (the emulator then delivers its events, one at a time)."
        ],
    )


def retries_logged(log: IO[bytes]) -> int:
    """Jobs the workers have retried so far (each logs `job_retrying` at warning level). Read
    through a file of its own: seeking `log` would move the workers' write offset too."""
    return Path(log.name).read_bytes().count(b'"job_retrying"')


async def provisioning_phase(
    runner: Runner, environment: Environment, db: Sessions, owner: str, workers: int
) -> Measurement:
    count = PROVISION_ORDERS + PROVISION_WARMUP_ORDERS
    order_ids = await insert_paid_orders(db, await user_id(db, owner), count, PROVISION_LINES)
    per_order = sum(line.quantity for line in PROVISION_LINES)
    name = f"provision: paid -> {per_order} running, {workers} worker{'s' * (workers > 1)}"
    progress(f"{name}: {PROVISION_ORDERS} orders at once")
    publisher = AppQueuePublisher(environment.settings)
    try:
        await publisher.publish([])  # connected before the phase, not in its first request
        async with Watcher(
            db, orders_running(per_order), RUNNING_WATCH_SECONDS
        ).running() as running:
            provisioning = Provisioning(order_ids, publisher, running, PROVISION_LIMIT.seconds)
            return await runner.run_phase(
                name,
                PROVISION_ORDERS,
                provisioning,
                PROVISION_LIMIT,
                warmup=Limit(PROVISION_WARMUP_ORDERS, 30.0),
            )
    finally:
        await publisher.close()


async def worker_phases(
    runner: Runner, environment: Environment, db: Sessions, logs: Logs, *, cores: int
) -> Section:
    """Payment-to-paid with the emulator and one worker, then provisioning with one worker and
    with two."""
    progress("starting a worker and the Stripe emulator")
    async with running_worker(environment, logs.workers) as first:
        runner.watch_workers([first])
        async with running_emulator(environment, logs.directory / "emulator", logs.emulator):
            section = await payment_phase(runner, db, cores=cores)
        owner = (await sign_up(runner.base_url)).email
        await settle(db)
        retries = [retries_logged(logs.workers)]
        one = await provisioning_phase(runner, environment, db, owner, 1)
        await settle(db)
        retries.append(retries_logged(logs.workers))
        progress("starting a second worker")
        async with running_worker(environment, logs.workers) as second:
            runner.watch_workers([first, second])
            two = await provisioning_phase(runner, environment, db, owner, 2)
            await settle(db)
            retries.append(retries_logged(logs.workers))
        runner.watch_workers([])
    section.rows += [
        Row(one, aims=(no_target(7),), unit="orders/s"),
        Row(
            two,
            f"{one.throughput:.2f}/s 1 worker",
            two.throughput / one.throughput,
            (no_target(7),),
            "orders/s",
        ),
    ]
    settings = ", ".join(f"{k}={v}" for k, v in WORKER_SETTINGS.items())
    section.notes.append(
        f"Workers: `computebill worker`, default concurrency, with {settings}. The purchase rows "
        "ran with one worker and the Stripe emulator; provisioning rows count orders (each "
        f"{len(PROVISION_LINES)} lines x {PROVISION_LINES[0].quantity}) and their latency is "
        "from the job's request to the last of the order's instances seen running. Jobs the "
        f"workers retried (job_retrying in their log): {retries[1] - retries[0]} with 1 worker, "
        f"{retries[2] - retries[1]} with 2 (warm-up orders included)."
    )
    return section


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Logs:
    directory: Path
    app: IO[bytes]
    workers: IO[bytes]
    emulator: IO[bytes]

    def named(self) -> list[tuple[str, IO[bytes]]]:
        return [
            ("The app", self.app),
            ("The workers", self.workers),
            ("The emulator", self.emulator),
        ]


async def quiet_machine() -> None:
    """Give the setup's aftermath (PostgreSQL writing out the new database, the app's start) up
    to QUIET_WAIT_SECONDS to die down before the floor; other work will not wait, and shows."""
    deadline, busy = time.monotonic() + QUIET_WAIT_SECONDS, 0.0
    while time.monotonic() < deadline:
        busy = await asyncio.to_thread(busy_cores_now, 0.5)
        if busy < QUIET_CORES:
            return
    progress(f"the machine is still busy ({busy:.2f} cores); starting anyway")


async def benchmark(
    runner: Runner,
    environment: Environment,
    logs: Logs,
    *,
    cores: int,
    groups: Sequence[str],
) -> Section:
    await quiet_machine()
    floor, results = await floor_phases(runner)
    async with database(environment.settings) as db:
        if "auth" in groups:
            results.extend(await auth_phases(runner, floor, cores=cores))
        if "catalog" in groups:
            results.extend(await catalog_phases(runner, floor))
        if "cart" in groups:
            results.extend(await cart_phases(runner, environment, db, logs, floor))
        if "orders" in groups:
            results.extend(await orders_phase(runner, db, floor))
        if "workers" in groups:
            results.extend(await worker_phases(runner, environment, db, logs, cores=cores))
        if "webhooks" in groups:  # last: the jobs it queues would keep a worker busy
            results.extend(await webhook_phase(runner, environment, db, floor))
    return results


def commit_measured() -> str:
    """The checkout's commit (with `+changes` when the work tree differs from it)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


def header(
    cores: int, busy_before: float, servers: Servers, groups: Sequence[str], server: Server
) -> None:
    say(f"Compute Billing Platform: benchmarks, groups {', '.join(groups)}")
    say(f"date:     {datetime.now(UTC).isoformat(timespec='seconds')}")
    say(f"commit:   {commit_measured()}")
    say(f"machine:  {cores} cores, {cpu_model()}, {platform.platform()}")
    say(f"          {busy_before:.2f} cores busy with other work just before the run")
    say(f"python:   {platform.python_version()} ({sys.executable})")
    say(
        f"services: {servers.origin}; app: `computebill app`, 1 process, for the httpx groups, "
        f"{server} with one process per core for wrk; workers and the Stripe emulator only in "
        "their phases"
    )
    say(
        f"floor:    GET {FLOOR_PATH} (fixed JSON body, no I/O); the platform has no bare "
        "fixed-JSON endpoint, so this is the floor"
    )
    say()


async def run(
    servers: Servers,
    logs: Logs,
    *,
    cores: int,
    groups: Sequence[str],
    timing: Timing,
    server: Server,
) -> None:
    progress("creating, migrating and seeding a throwaway database")
    async with scratch_environment(servers, bcrypt_rounds=BCRYPT_ROUNDS) as environment:
        if set(groups) & set(HTTPX_GROUPS):
            async with running_app(environment, logs.app) as app:
                results = await benchmark(
                    Runner(app.base_url, app.pid), environment, logs, cores=cores, groups=groups
                )
            report(results, cores=cores)
            say()
        if "wrk" in groups:
            progress(f"starting the app ({server}), one process per core")
            async with (
                running_app(environment, logs.app, workers="auto", server=server) as app,
                database(environment.settings) as db,
            ):
                await quiet_machine()
                wrk = Wrk(app.base_url, app.pid, logs.directory, max_threads=cores)
                await wrk_group(
                    wrk,
                    db,
                    environment.webhook_secret,
                    timing,
                    cores=cores,
                    bcrypt_rounds=BCRYPT_ROUNDS,
                )
    if "metering" in groups:
        # A database and Redis namespace of its own: the wrk group leaves some 100,000 stored
        # webhook events behind, which a worker started on them would process first.
        progress("creating, migrating and seeding a throwaway database for metering")
        async with (
            scratch_environment(servers, bcrypt_rounds=BCRYPT_ROUNDS) as environment,
            database(environment.settings) as db,
        ):
            passes = await settlement_passes(db)
            cap = await cap_latency(db, environment, logs.workers)
        print_metering(passes, cap)
    if "console" in groups:
        progress("creating, migrating and seeding a throwaway database for the console")
        async with scratch_environment(servers, bcrypt_rounds=BCRYPT_ROUNDS) as environment:
            rows = await console_lists(environment, logs.app)
        print_console(rows)


def show_log(name: str, log: IO[bytes], lines: int = 5) -> None:
    log.seek(0)
    logged = log.read().decode(errors="replace").splitlines()
    if logged:
        say(f"\n{name} logged {len(logged)} lines at warning or above; the first {lines}:")
        for line in logged[:lines]:
            say(f"  {line}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # clean up as on Ctrl-C: stop the processes, drop the database


@dataclass(frozen=True, slots=True)
class Options:
    groups: list[str]
    timing: Timing
    server: Server


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_GROUPS),
        help=f"comma-separated groups to run, of {', '.join(GROUPS)} (default: "
        f"{','.join(DEFAULT_GROUPS)}; the httpx floor runs with any of the others)",
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="wrk: seconds of warm-up per row (default 5)"
    )
    parser.add_argument(
        "--duration", type=float, default=15.0, help="wrk: seconds measured per row (default 15)"
    )
    parser.add_argument(
        "--storm", type=float, default=60.0, help="wrk: seconds of the webhook storm (default 60)"
    )
    parser.add_argument(
        "--server",
        type=Server,
        choices=list(Server),
        default=Server.UVICORN,
        help="wrk: the HTTP server, one process per core (default uvicorn: `computebill app "
        "--workers auto`; granian serves the same app factory, for the comparison only)",
    )
    options = parser.parse_args(argv)
    groups = [group.strip() for group in options.only.split(",") if group.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s): {', '.join(unknown)}")
    return Options(groups, Timing(options.warmup, options.duration, options.storm), options.server)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    cores = usable_cores()
    busy_before = busy_cores_now()
    with ExitStack() as stack:
        workdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="computebill-bench-"))
        )
        app_log, workers_log, emulator_log = (
            stack.enter_context((workdir / f"{name}.log").open("w+b"))
            for name in ("app", "workers", "emulator")
        )
        logs = Logs(workdir, app_log, workers_log, emulator_log)
        progress("starting services")
        services = stack.enter_context(servers(workdir))
        header(cores, busy_before, services, options.groups, options.server)
        try:
            asyncio.run(
                run(
                    services,
                    logs,
                    cores=cores,
                    groups=options.groups,
                    timing=options.timing,
                    server=options.server,
                )
            )
        except ServiceFailedToStart as error:
            say(f"A process did not start: {error}")
            for name, log in logs.named():
                show_log(name, log, lines=40)
            return 1
        except KeyboardInterrupt:
            say("Interrupted; every process is stopped and the throwaway database dropped.")
            return 130
        for name, log in logs.named():
            show_log(name, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
