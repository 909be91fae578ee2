"""The `wrk` group (issue 14): the cost of each hot request at machine speed. The real
`computebill app --workers auto` (one server process per core) is driven by wrk, a compiled load
generator, so that the floor is the app's. Each row: a warm-up, then the measured run; its req/s,
ratio to the floor from the same run, p50, p99, errors, and the app's CPU per request (every app
process, parent and children). Then the app's RSS over a webhook storm.
"""

from __future__ import annotations

import asyncio
import json
import math
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.database import (
    LineSpec,
    count_events,
    empty_carts,
    insert_paid_orders,
    insert_running_instances,
    user_id,
)
from bench.machine import time_bcrypt
from bench.metering import insert_metered_accounts
from bench.report import NOTE_WIDTH, format_table, progress, say, verdict
from bench.workloads import Account, SignedEvents, bearer, sign_up
from bench.wrk import Load, Wrk, WrkResult, app_rss_bytes, raw_request
from computebill.cart.schemas import MAX_QUANTITY
from computebill.cart.service import MAX_ITEMS
from computebill.db import unit_of_work
from computebill.devserver.scratch import Sessions

C, LOGIN_C = 32, 4
QUOTE = {"gpu": "nvidia-h100", "gpu_count": 8, "vcpus": 96, "storage_gb": 2000, "hours": 10}
LIST_SIZE = 20  # orders of the orders list, instances of the instance list
ORDER_LINES = (
    LineSpec("nvidia-h100", gpu_count=8, vcpus=96, storage_gb=2000, hours=10, quantity=1),
    LineSpec("amd-mi300x", gpu_count=4, vcpus=48, storage_gb=1000, hours=24, quantity=1),
)
INSTANCE_LINES = (
    LineSpec("nvidia-h100", gpu_count=1, vcpus=12, storage_gb=100, hours=10, quantity=LIST_SIZE),
)
# Cart adds: each shopper goes through CART_VARIANTS configurations in turn (the cart's line
# limit, each up to MAX_QUANTITY): 20 x 8 = 160 adds per shopper fit before a 409 or 422. The
# warm-up has SHOPPERS_PER_CONNECTION x C shoppers (10 240 adds); before the measured run the
# carts are emptied and more shoppers sign up, for CART_HEADROOM x the warm-up's rate.
METERED_RATE = 7_654_321  # millicents an hour, each of the credits row's running instances
SHOPPERS_PER_CONNECTION = 2
CART_ITEM = {"gpu": "nvidia-h100", "gpu_count": 1, "vcpus": 12, "storage_gb": 100}
CART_VARIANTS = MAX_ITEMS
ADDS_PER_SHOPPER = MAX_ITEMS * MAX_QUANTITY
CART_HEADROOM = 1.5
WEBHOOK_ID_PREFIX = "evt_wrk_"
WEBHOOK_HEADROOM = 2.0  # events written per run: this x the expected rate x the seconds
JSON = {"Content-Type": "application/json"}

# The aims, as issue 14 gives them: (ratio to the floor, app CPU ms per request).
AIM_WEBHOOK = (0.35, 1.5)
AIM_WEBHOOK_P99_MS = 50.0
AIM_ORDERS = (0.12, 2.5)
AIM_INSTANCES = (0.15, 2.5)
AIM_REFRESH = (0.10, 3.0)
AIM_CART = (0.10, 3.0)
AIM_CATALOG = (0.60, None)
AIM_LOGIN_OF_BCRYPT = 0.85
AIM_RSS_GROWTH = 0.05

# What each row's request does beyond the floor's, as its profile shows it (docs/performance.md
# gives the shares): printed under the table for a row that misses an aim.
_AUTHENTICATED = "the access token's verification and the revocation GET in Redis"
REMAINING_COST = {
    "POST /webhooks/stripe": (
        "the signature check and parse, the batch's INSERT and COMMIT (PostgreSQL's WAL flush, "
        "beside the app), and publishing each event's processing job to Redis (one pipeline per "
        "batch, one queue function call per job)"
    ),
    "GET /api/v1/orders (20)": (
        f"{_AUTHENTICATED}; the list's one statement (20 orders and their 40 lines) and its "
        "encoding"
    ),
    "GET /api/v1/instances (20)": (
        f"{_AUTHENTICATED}; the list's one statement (20 instances) and its encoding"
    ),
    "POST /api/v1/auth/refresh": (
        "a transaction of three round trips (BEGIN, the refresh statement, COMMIT) and the "
        "rate-limit hit in Redis; PostgreSQL's CPU for them shares the cores with the app"
    ),
    "POST /api/v1/cart/items": (
        f"{_AUTHENTICATED}; a transaction of four round trips (BEGIN, the cart lock, the add "
        "with its pricing read, COMMIT); the whole cart priced and encoded in the answer"
    ),
    "GET /api/v1/gpus": (
        "the catalog's version GET in Redis on every request (a change reaches every process "
        "at once), and a larger answer than the floor's"
    ),
    "POST /api/v1/quotes": (
        "the catalog's version GET in Redis on every request (a change reaches every process "
        "at once), the body's validation and the pricing"
    ),
}


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds of each row's warm-up, of its measured run, and of the webhook storm."""

    warmup: float
    measured: float
    storm: float


@dataclass(slots=True)
class Line:
    """One row of the table: what wrk measured, what it is compared with, the aims and whether
    each was met (None: a figure without a target)."""

    result: WrkResult
    baseline: str
    ratio: float | None
    aims: list[tuple[str, bool | None]] = field(default_factory=list)


class Group:
    """The rows measured so far, and the webhook events sent and answered across runs."""

    def __init__(self, wrk: Wrk, db: Sessions, webhook_secret: str, timing: Timing) -> None:
        self.wrk = wrk
        self.db = db
        self.timing = timing
        self.events = SignedEvents(webhook_secret, WEBHOOK_ID_PREFIX)
        self.webhook_answered = 0  # 200s of every webhook run, warm-ups and the storm included
        self.webhook_sent = 0
        self.webhook_wraps = 0
        self.lines: list[Line] = []
        self.notes: list[str] = []
        self.floor: WrkResult | None = None

    # --- requests ---

    def call(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> str:
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        extra = (headers or {}) | (JSON if content is not None else {})
        return raw_request(method, path, self.wrk.host, headers=extra, body=content)

    def webhook_load(self, expected_rate: float, seconds: float) -> Load:
        count = math.ceil(expected_rate * seconds * WEBHOOK_HEADROOM) + 4 * C
        records = []
        for _ in range(count):
            body, signature = self.events.next_signed()
            headers = JSON | {"Stripe-Signature": signature}
            records.append(
                raw_request("POST", "/webhooks/stripe", self.wrk.host, headers=headers, body=body)
            )
        return Load(records=records)

    # --- running ---

    async def run(
        self,
        name: str,
        make_load: Callable[[float], Awaitable[Load]],
        *,
        connections: int = C,
        between: Callable[[WrkResult], Awaitable[None]] | None = None,
        webhooks: bool = False,
    ) -> WrkResult:
        """A warm-up run (not reported), then the measured run; each with a load of its own
        (`make_load` is given the run's seconds); `between` is given the warm-up's result.
        `webhooks`: both runs sent webhook events, to be counted against the rows stored."""
        seconds = self.timing.warmup
        progress(f"wrk {name}, c={connections}: {seconds:.0f} s warm-up")
        warmup = await self.wrk.run(
            name, await make_load(seconds), connections=connections, seconds=seconds
        )
        if webhooks:
            self.count_webhooks(warmup)
        if between is not None:
            await between(warmup)
        seconds = self.timing.measured
        progress(f"wrk {name}, c={connections}: {seconds:.0f} s measured")
        measured = await self.wrk.run(
            name, await make_load(seconds), connections=connections, seconds=seconds
        )
        if webhooks:
            self.count_webhooks(measured)
        return measured

    def count_webhooks(self, result: WrkResult) -> None:
        self.webhook_answered += result.succeeded
        self.webhook_sent += result.sent
        self.webhook_wraps += result.wraps

    def add(
        self, result: WrkResult, aim: tuple[float, float | None] | None, *extra: tuple[str, bool]
    ) -> Line:
        assert self.floor is not None
        ratio = result.throughput / self.floor.throughput
        line = Line(result, f"{self.floor.throughput:.0f}/s floor", ratio)
        if aim is not None:
            aim_ratio, aim_cpu = aim
            line.aims.append((f"ratio >= {aim_ratio:.2f}", ratio >= aim_ratio))
            cpu = result.app_cpu_ms_per_request
            if aim_cpu is not None:
                line.aims.append((f"CPU <= {aim_cpu} ms", cpu is not None and cpu <= aim_cpu))
        line.aims += extra
        detail = result.error_detail()
        line.aims.append((f"0 errors ({detail})" if detail else "0 errors", result.errors == 0))
        self.lines.append(line)
        return line


async def _log_in(base_url: str, account: Account, times: int) -> list[str]:
    """`times` sessions of the account: their refresh tokens (LOGIN_C logins at a time)."""
    gate = asyncio.Semaphore(LOGIN_C)
    body = {"email": account.email, "password": account.password}
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:

        async def one() -> str:
            async with gate:
                response = await client.post("/api/v1/auth/login", json=body)
                response.raise_for_status()
                return str(response.json()["refresh_token"])

        return list(await asyncio.gather(*(one() for _ in range(times))))


async def _check_lists(base_url: str, path: str, key: str, token: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        page = await client.get(path, headers=bearer(token))
        page.raise_for_status()
        if len(page.json()[key]) != LIST_SIZE:
            raise RuntimeError(f"GET {path} lists {len(page.json()[key])}, not {LIST_SIZE}")


async def wrk_group(
    wrk: Wrk, db: Sessions, webhook_secret: str, timing: Timing, *, cores: int, bcrypt_rounds: int
) -> None:
    """Every row of issue 14's table, then the storm; prints the group's table."""
    base = wrk.base_url
    group = Group(wrk, db, webhook_secret, timing)

    progress("wrk setup: accounts, 20 orders, 20 instances, shoppers (bcrypt in the app)")
    lister = await sign_up(base)
    await insert_paid_orders(db, await user_id(db, lister.email), LIST_SIZE, ORDER_LINES)
    await _check_lists(base, "/api/v1/orders", "orders", lister.access_token)
    owner = await sign_up(base)
    (order,) = await insert_paid_orders(db, await user_id(db, owner.email), 1, INSTANCE_LINES)
    await insert_running_instances(db, order, LIST_SIZE)
    await _check_lists(base, "/api/v1/instances", "instances", owner.access_token)
    payer = await sign_up(base)
    async with unit_of_work(db) as session:  # $1,000 of credit, three instances burning it
        await insert_metered_accounts(
            session,
            [100_000_000],
            instances_per_account=3,
            rate=METERED_RATE,
            started_at=datetime.now(UTC),
            users=[await user_id(db, payer.email)],
        )
    account = await sign_up(base)
    shoppers = list(
        await asyncio.gather(*(sign_up(base, db) for _ in range(SHOPPERS_PER_CONNECTION * C)))
    )
    shopper_ids = [await user_id(db, shopper.email) for shopper in shoppers]

    def fixed(record: str) -> Callable[[float], Awaitable[Load]]:
        async def load(seconds: float) -> Load:
            return Load(records=[record])

        return load

    healthz = group.call("GET", "/healthz")
    group.floor = await group.run("GET /healthz (floor)", fixed(healthz))
    group.add(group.floor, None)

    floor_rate = group.floor.throughput
    rates = {"webhook": floor_rate}

    async def webhooks(seconds: float) -> Load:
        return group.webhook_load(rates["webhook"], seconds)

    async def warmed(warmup: WrkResult) -> None:
        rates["webhook"] = warmup.throughput

    webhook = await group.run("POST /webhooks/stripe", webhooks, between=warmed, webhooks=True)
    rates["webhook"] = webhook.throughput
    webhook_line = group.add(
        webhook,
        AIM_WEBHOOK,
        (f"p99 < {AIM_WEBHOOK_P99_MS:.0f} ms", webhook.p99_ms < AIM_WEBHOOK_P99_MS),
    )

    orders = group.call("GET", "/api/v1/orders", headers=bearer(lister.access_token))
    group.add(await group.run("GET /api/v1/orders (20)", fixed(orders)), AIM_ORDERS)
    instances = group.call("GET", "/api/v1/instances", headers=bearer(owner.access_token))
    group.add(await group.run("GET /api/v1/instances (20)", fixed(instances)), AIM_INSTANCES)
    credits = group.call("GET", "/api/v1/credits", headers=bearer(payer.access_token))
    group.add(await group.run("GET /api/v1/credits (3 running)", fixed(credits)), None)

    async def sessions(seconds: float) -> Load:
        count = C + min(cores, C)  # one per connection, and one more per wrk thread
        progress(f"wrk setup: {count} sessions to refresh (bcrypt in the app)")
        tokens = await _log_in(base, account, count)
        return Load(refresh_tokens=tokens, refresh_path="/api/v1/auth/refresh")

    group.add(await group.run("POST /api/v1/auth/refresh", sessions), AIM_REFRESH)

    # Round r sends every shopper's add of configuration r (hours = r + 1): a shopper's first
    # CART_VARIANTS adds each insert a line, the later ones raise a line's quantity.
    async def cart_adds(seconds: float) -> Load:
        return Load(
            records=[
                group.call(
                    "POST",
                    "/api/v1/cart/items",
                    body=CART_ITEM | {"hours": variant + 1},
                    headers=bearer(shopper.access_token),
                )
                for variant in range(CART_VARIANTS)
                for shopper in shoppers
            ]
        )

    async def more_shoppers(warmup: WrkResult) -> None:
        wanted = math.ceil(warmup.throughput * timing.measured * CART_HEADROOM / ADDS_PER_SHOPPER)
        if wanted > len(shoppers):
            progress(f"wrk setup: {wanted - len(shoppers)} more shoppers (bcrypt in the app)")
            gate = asyncio.Semaphore(C)

            async def one() -> Account:
                async with gate:
                    return await sign_up(base)

            added = await asyncio.gather(*(one() for _ in range(wanted - len(shoppers))))
            shoppers.extend(added)
            shopper_ids.extend([await user_id(db, shopper.email) for shopper in added])
        await empty_carts(db, shopper_ids)

    group.add(
        await group.run("POST /api/v1/cart/items", cart_adds, between=more_shoppers), AIM_CART
    )

    gpus = group.call("GET", "/api/v1/gpus")
    group.add(await group.run("GET /api/v1/gpus", fixed(gpus)), AIM_CATALOG)
    quotes = group.call("POST", "/api/v1/quotes", body=QUOTE)
    group.add(await group.run("POST /api/v1/quotes", fixed(quotes)), AIM_CATALOG)

    progress(f"timing bcrypt at cost {bcrypt_rounds} in this process (the app idle)")
    bcrypt = await asyncio.to_thread(time_bcrypt, bcrypt_rounds, cores)
    log_in = group.call(
        "POST", "/api/v1/auth/login", body={"email": account.email, "password": account.password}
    )
    login = await group.run("POST /api/v1/auth/login", fixed(log_in), connections=LOGIN_C)
    limit = bcrypt.limit_for(LOGIN_C)
    login_line = group.add(login, None)
    login_line.baseline, login_line.ratio = (
        f"{limit:.1f}/s bcrypt x{cores}",
        login.throughput / limit,
    )
    login_line.aims.insert(
        0, (f"ratio >= {AIM_LOGIN_OF_BCRYPT:.2f}", login_line.ratio >= AIM_LOGIN_OF_BCRYPT)
    )
    group.notes.append(
        f"bcrypt at cost {bcrypt_rounds}, timed in the load process just before the logins: one "
        f"checkpw {bcrypt.check_seconds * 1000:.0f} ms -> limit {min(LOGIN_C, cores)} / "
        f"{bcrypt.check_seconds:.3f} s = {limit:.1f} logins/s; {cores} threads at once managed "
        f"{bcrypt.parallel_rate:.1f} checks/s"
    )

    progress(f"wrk webhook storm: {timing.storm:.0f} s, RSS before and after")
    app_pid = wrk.app_pid
    storm_load = group.webhook_load(rates["webhook"], timing.storm)
    rss_start = app_rss_bytes(app_pid)
    storm = await wrk.run(
        "POST /webhooks/stripe storm", storm_load, connections=C, seconds=timing.storm
    )
    rss_end = app_rss_bytes(app_pid)
    group.count_webhooks(storm)
    growth = (rss_end - rss_start) / rss_start
    group.add(
        storm,
        None,
        (
            f"RSS {rss_start / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB <= +{AIM_RSS_GROWTH:.0%}",
            growth <= AIM_RSS_GROWTH,
        ),
    )

    stored = await count_events(db, WEBHOOK_ID_PREFIX)
    all_stored = group.webhook_answered <= stored <= group.webhook_sent and group.webhook_wraps == 0
    webhook_line.aims.insert(
        -1,
        (
            f"every 200 stored: {group.webhook_answered} 200s, {stored} rows",
            all_stored,
        ),
    )
    group.notes.append(
        f"Webhooks: every run sent new events ({WEBHOOK_ID_PREFIX}<n>, type "
        f"{SignedEvents.EVENT_TYPE}, stored and ignored; no worker ran); 'every 200 stored' "
        f"compares the rows with that prefix after the storm with the 200s of every webhook run "
        f"(warm-ups and the storm included): at least as many rows as 200s, at most as many as "
        f"sent ({group.webhook_sent}; wrk stops with requests in flight, answered but not "
        f"counted); the runs wrapped around their events {group.webhook_wraps} times."
    )
    print_table(group.lines, group.notes)


HEADERS = (
    "row",
    "conc",
    "requests",
    "errors",
    "req/s",
    "baseline (same run)",
    "ratio",
    "p50 ms",
    "p99 ms",
    "app CPU ms/req",
    "cores app/wrk/other",
    "aim",
    "met",
)
LEFT = {0, 5, 10, 11, 12}


def table_lines(line: Line) -> list[tuple[str, ...]]:
    r = line.result
    cpu = r.app_cpu_ms_per_request
    aims = line.aims or [("-", None)]
    first = (
        r.name,
        str(r.connections),
        str(r.requests),
        str(r.errors),
        f"{r.throughput:.1f}",
        line.baseline,
        "-" if line.ratio is None else f"{line.ratio:.3f}",
        f"{r.p50_ms:.1f}",
        f"{r.p99_ms:.1f}",
        "-" if cpu is None else f"{cpu:.2f}",
        "/".join(f"{cores:.2f}" for cores in r.cores()),
        aims[0][0],
        verdict(aims[0][1]),
    )
    blank = ("",) * (len(HEADERS) - 2)
    return [first, *((*blank, text, verdict(met)) for text, met in aims[1:])]


def print_table(lines: Sequence[Line], notes: Sequence[str]) -> None:
    say("wrk: `computebill app --workers auto`, load from wrk (Debian's), c=32 unless stated")
    rows = [cells for line in lines for cells in table_lines(line)]
    for text in format_table(HEADERS, rows, left=LEFT):
        say(text)
    aims = [met for line in lines for _, met in line.aims]
    say(f"wrk aims: {sum(m is True for m in aims)} met, {sum(m is False for m in aims)} not met")
    for note in notes:
        say(textwrap.fill(note, NOTE_WIDTH, subsequent_indent="  "))
    for line in lines:
        if any(met is False for _, met in line.aims) and line.result.name in REMAINING_COST:
            remains = f"{line.result.name}, aim not met; beyond the floor it pays for "
            say(
                textwrap.fill(
                    remains + REMAINING_COST[line.result.name], NOTE_WIDTH, subsequent_indent="  "
                )
            )
    say()
