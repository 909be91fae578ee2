"""Issue 18's console benchmark: the operator's lists and overview at the size of a real cloud's
back office, 100,000 orders and 1,000,000 ledger entries in 20,000 accounts.

The accounts, their orders (one line each), the orders' refunds and instances, the ledgers and a
Stripe inbox are written straight into the run's database by a few `INSERT … SELECT
generate_series` statements, then analysed; an admin signs up through the app. Each row is
`REQUESTS` calls, one at a time, to the real app (one process), as an operator's browser or
script makes them: p50 and p99 of the whole request, beside the floor (`GET /healthz`) measured
in the same run. Each row's SQL is caught as the service runs it in this process and explained:
the row says how many rows of the big tables it read and which it read by a sequential scan
(none, for an indexed keyset page). The overview sums its windows, so its aim is its own: the
rows of its 30-day windows, read through indexes, and none older (`_overview_aim`).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import event, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench.report import format_table, progress, say, verdict
from bench.services import Environment, running_app
from bench.workloads import bearer, sign_up
from computebill.auth import service as accounts
from computebill.auth.models import User
from computebill.console import service as console
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.instances import service as instances
from computebill.instances.models import InstanceStatus
from computebill.orders import service as orders
from computebill.orders.models import OrderStatus
from computebill.paging import encode_cursor
from computebill.payments import inbox
from computebill.payments.models import EventStatus

CUSTOMERS = 20_000
ORDERS_PER_CUSTOMER = 5  # 100,000 orders
ENTRIES_PER_CUSTOMER = 50  # 1,000,000 ledger entries
PROCESSED_EVENTS, FAILED_EVENTS = 100_000, 25
REQUESTS, WARMUP = 200, 20
# The tables whose sequential scan a list or the overview must never need at this size.
BIG_TABLES = (
    "users",
    "orders",
    "order_lines",
    "refunds",
    "instances",
    "instance_status_changes",
    "credit_accounts",
    "credit_entries",
    "stripe_events",
)


@dataclass(frozen=True, slots=True)
class RowAim:
    p99_ms: float
    rows_read: int  # fewer than this, and no sequential scan of the big tables

    def __str__(self) -> str:
        return f"p99 < {self.p99_ms:.0f} ms; reads < {self.rows_read:,} rows, no seq scan"


# A list: a page of 20 to 100 found through an index, not a walk of a table.
LIST_AIM = RowAim(50.0, 1_000)
# The overview sums what happened in its windows (the widest is 30 days), so it reads those rows,
# through indexes; `OVERVIEW_WINDOW_READS` times the rows its 30-day windows hold (orders paid
# and instances run in them: the orders are read for money in and, with their lines, for hours
# sold), and none before.
OVERVIEW_P99_MS = 250.0
OVERVIEW_WINDOW_READS = 3

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
# 250 family names of 5 stems: the search for "lovel" matches 4,000 accounts, far more than a
# page, which must still come from the indexes, sorted by address.
FAMILY_NAMES = [
    f"{stem}{suffix}"
    for stem in ("Lovelace", "Hopper", "Turing", "Liskov", "Knuth")
    for suffix in ("", *(f"-{n}" for n in range(1, 50)))
]


@dataclass(frozen=True, slots=True)
class ConsoleRow:
    name: str
    latencies_ms: list[float]
    reads: Reads | None  # None: not explained (the floor; a page of several reads)
    aim: RowAim | None  # None: the floor, which has none

    def met(self) -> bool | None:
        if self.aim is None:
            return None
        bounded = self.reads is None or (
            self.reads.rows < self.aim.rows_read and not self.reads.seq_scans
        )
        return self.percentile(0.99) < self.aim.p99_ms and bounded

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _seed(db: AsyncSession) -> None:
    """Accounts, orders with one line each, and ledgers, in a handful of statements."""
    await db.execute(
        text(
            """
            INSERT INTO users (id, email, name, password_changed_at, email_verified_at, role)
            SELECT gen_random_uuid(), 'customer-' || n || '@bench.invalid',
                   (CAST(:first AS text[]))[1 + n % 8] || ' '
                       || (CAST(:family AS text[]))[1 + n % 250],
                   now(), now(), 'user'
            FROM generate_series(1, :customers) AS n
            """
        ),
        {"first": list(FIRST_NAMES), "family": FAMILY_NAMES, "customers": CUSTOMERS},
    )
    # An order every 5 minutes, about a year of them (a back office's history, of which the
    # overview's 30 days are a twelfth): most paid, some refunded, some still open.
    await db.execute(
        text(
            """
            INSERT INTO orders (id, user_id, status, currency, total_cents, refunded_cents,
                                cart_fingerprint, paid_at, created_at, updated_at, needs_review)
            SELECT gen_random_uuid(), u.id,
                   (CASE WHEN k % 10 = 0 THEN 'refunded' WHEN k % 10 = 1 THEN 'pending'
                         ELSE 'paid' END)::order_status,
                   'usd', 1000 + k, CASE WHEN k % 10 = 0 THEN 1000 + k ELSE 0 END, 'bench',
                   CASE WHEN k % 10 = 1 THEN NULL ELSE at END, at, at, k % 500 = 7
            FROM (SELECT id, row_number() OVER (ORDER BY id) AS i FROM users
                  WHERE email LIKE 'customer-%') AS u,
                 generate_series(1, :per) AS o,
                 LATERAL (SELECT u.i * :per + o AS k) AS key,
                 LATERAL (SELECT now() - key.k * interval '5 minutes' AS at) AS t
            """
        ),
        {"per": ORDERS_PER_CUSTOMER},
    )
    await db.execute(
        text(
            """
            INSERT INTO order_lines (id, order_id, position, gpu_model_id, gpu_slug, gpu_name,
                gpu_count, vcpus, storage_gb, hours, region, quantity, gpu_hour_cents,
                vcpu_hour_millicents, storage_gb_hour_millicents, unit_total_cents,
                line_total_cents)
            SELECT gen_random_uuid(), o.id, 0, m.id, m.slug, m.name, 1, 12, 100,
                   1 + o.total_cents % 24, 'us-east-1', 1, o.total_cents, 0, 0, o.total_cents,
                   o.total_cents
            FROM orders AS o,
                 (SELECT id, slug, name FROM gpu_models ORDER BY slug LIMIT 1) AS m
            WHERE o.cart_fingerprint = 'bench'
            """
        )
    )
    await db.execute(
        text(
            """
            INSERT INTO refunds (id, order_id, refund_id, amount_cents, status, created_at)
            SELECT gen_random_uuid(), id, 're_bench_' || id, refunded_cents, 'succeeded',
                   least(paid_at + interval '1 day', now())
            FROM orders WHERE cart_fingerprint = 'bench' AND refunded_cents > 0
            """
        )
    )
    # A machine for each paid order, run for its line's hours: the latest few hundred still
    # running, the rest terminated, a few failed, or stuck provisioning or stopping.
    await db.execute(
        text(
            """
            INSERT INTO instances (id, user_id, order_id, order_line_id, index, name, gpu_slug,
                gpu_name, gpu_count, vcpus, storage_gb, region, paid_seconds, paid_cents,
                status, polls, launch_requested_at, started_at, expires_at, run_ended_at,
                terminated_at, failure_reason, created_at, updated_at)
            SELECT gen_random_uuid(), o.user_id, o.id, l.id, 0, 'bench-' || o.total_cents,
                   l.gpu_slug, l.gpu_name, l.gpu_count, l.vcpus, l.storage_gb, l.region,
                   l.hours * 3600, l.line_total_cents, s.status::instance_status, 1, o.paid_at,
                   CASE WHEN s.started THEN t.started_at END,
                   CASE WHEN s.started THEN t.stop_at END,
                   CASE WHEN s.status = 'stopping' THEN least(t.stop_at, now()) END,
                   CASE WHEN s.status = 'terminated' THEN t.stop_at END,
                   CASE WHEN s.status = 'failed' THEN 'bench' END,
                   o.paid_at, o.paid_at
            FROM orders AS o
            JOIN order_lines AS l ON l.order_id = o.id,
                 LATERAL (SELECT o.paid_at + interval '30 seconds' AS started_at,
                                 o.paid_at + interval '30 seconds' + l.hours * interval '1 hour'
                                     AS stop_at) AS t,
                 LATERAL (SELECT CASE WHEN o.total_cents % 1000 = 3 THEN 'failed'
                                      WHEN o.total_cents % 2000 = 11 THEN 'provisioning'
                                      WHEN o.total_cents % 2000 = 13 THEN 'stopping'
                                      WHEN t.stop_at > now() THEN 'running'
                                      ELSE 'terminated' END AS status) AS c,
                 LATERAL (SELECT c.status AS status,
                                 c.status NOT IN ('failed', 'provisioning') AS started) AS s
            WHERE o.cart_fingerprint = 'bench' AND o.paid_at IS NOT NULL
            """
        )
    )
    await db.execute(
        text(
            """
            INSERT INTO instance_status_changes (instance_id, from_status, to_status, reason,
                                                 changed_at)
            SELECT id, NULL::instance_status, 'provisioning'::instance_status, 'bench',
                   created_at
            FROM instances WHERE name LIKE 'bench-%'
            UNION ALL
            SELECT id, 'provisioning', 'running', 'bench', started_at
            FROM instances WHERE name LIKE 'bench-%' AND started_at IS NOT NULL
            UNION ALL
            SELECT id, CASE WHEN status = 'failed' THEN 'provisioning' ELSE 'running' END
                       ::instance_status,
                   status, 'bench',
                   coalesce(terminated_at, run_ended_at, created_at + interval '1 minute')
            FROM instances
            WHERE name LIKE 'bench-%' AND status IN ('terminated', 'stopping', 'failed')
            """
        )
    )
    # The Stripe inbox: one event a minute, processed, but for a few that failed.
    await db.execute(
        text(
            """
            INSERT INTO stripe_events (id, type, created, payload, received_at, status,
                                       attempts, processed_at, outcome, last_error)
            SELECT 'evt_bench_' || n,
                   CASE WHEN n % 3 = 0 THEN 'charge.refunded'
                        ELSE 'checkout.session.completed' END,
                   t.at, '{"object": "event"}'::jsonb, t.at,
                   CASE WHEN f.failed THEN 'failed' ELSE 'processed' END::stripe_event_status,
                   CASE WHEN f.failed THEN 5 ELSE 1 END,
                   CASE WHEN NOT f.failed THEN t.at END,
                   CASE WHEN NOT f.failed THEN 'bench' END,
                   CASE WHEN f.failed THEN 'bench: the handler failed' END
            FROM generate_series(1, :events) AS n,
                 LATERAL (SELECT now() - n * interval '1 minute' AS at) AS t,
                 LATERAL (SELECT n % (:events / :failed) = 17 AS failed) AS f
            """
        ),
        {"events": PROCESSED_EVENTS + FAILED_EVENTS, "failed": FAILED_EVENTS},
    )
    # A top-up, then usage charges: the balance after each is the running sum.
    await db.execute(
        text(
            """
            INSERT INTO credit_accounts (user_id, balance_millicents)
            SELECT id, 100000000 - (:per - 1) * 1000 FROM users WHERE email LIKE 'customer-%'
            """
        ),
        {"per": ENTRIES_PER_CUSTOMER},
    )
    await db.execute(
        text(
            """
            INSERT INTO credit_entries (id, user_id, kind, amount_millicents,
                                        balance_after_millicents, idempotency_key, created_at)
            SELECT gen_random_uuid(), a.user_id,
                   CASE WHEN e = 1 THEN 'top_up' ELSE 'usage' END,
                   CASE WHEN e = 1 THEN 100000000 ELSE -1000 END,
                   100000000 - (e - 1) * 1000,
                   'bench:' || a.user_id || ':' || e,
                   now() - (:per - e) * interval '1 hour'
            FROM credit_accounts AS a, generate_series(1, :per) AS e
            ORDER BY a.user_id, e
            """
        ),
        {"per": ENTRIES_PER_CUSTOMER},
    )


async def _admin(environment: Environment, db: AsyncSession) -> str:
    """An admin's access token: signed up through the app, the role and two-factor
    authentication's flag set in the database (the console requires both)."""
    account = await sign_up(environment.app_url)
    await db.execute(
        update(User)
        .where(User.email == account.email)
        .values(role=accounts.Role.ADMIN.value, totp_enabled_at=text("now()"))
    )
    return account.access_token


async def _timed(client: httpx.AsyncClient, path: str, token: str | None) -> list[float]:
    headers = bearer(token) if token else {}
    for _ in range(WARMUP):
        (await client.get(path, headers=headers)).raise_for_status()
    latencies = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        answer = await client.get(path, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return latencies


@dataclass(frozen=True, slots=True)
class Reads:
    """What a row's SQL read of the big tables, from its plans run with EXPLAIN ANALYZE."""

    rows: int  # rows fetched or filtered away, every loop
    seq_scans: list[str]  # big tables read by a sequential scan


def _reads_of(node: dict[str, Any]) -> tuple[int, set[str]]:
    rows, scanned = 0, set()
    if node.get("Relation Name") in BIG_TABLES:
        fetched = (
            node.get("Actual Rows", 0)
            + node.get("Rows Removed by Filter", 0)
            + node.get("Rows Removed by Index Recheck", 0)
        )
        rows += round(fetched * node.get("Actual Loops", 1))
        if node["Node Type"] == "Seq Scan":
            scanned.add(node["Relation Name"])
    for child in node.get("Plans", []):
        more, seen = _reads_of(child)
        rows, scanned = rows + more, scanned | seen
    return rows, scanned


async def _reads(engine: AsyncEngine, run: Callable[[AsyncSession], Awaitable[Any]]) -> Reads:
    """Run `run` in this process, catch the statements it sends, and explain each (analysed,
    read-only: the console's lists write nothing)."""
    caught: list[tuple[str, Any]] = []

    def catch(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        caught.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", catch)
    try:
        async with create_sessionmaker(engine)() as session:
            await run(session)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", catch)
    rows, scanned = 0, set[str]()
    async with engine.connect() as connection:
        for statement, parameters in caught:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            plan = await connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters
            )
            more, seen = _reads_of(plan.scalar_one()[0]["Plan"])
            rows, scanned = rows + more, scanned | seen
    return Reads(rows, sorted(scanned))


async def _overview_aim(db: AsyncSession) -> RowAim:
    """The overview's aim at this run's data: the rows its 30-day windows hold, counted."""
    window_rows = await db.scalar(
        text(
            """
            SELECT (SELECT count(*) FROM orders WHERE paid_at >= now() - interval '30 days')
                 + (SELECT count(*) FROM instances
                    WHERE started_at IS NOT NULL
                      AND coalesce(least(run_ended_at, terminated_at, expires_at), now())
                          > now() - interval '30 days')
            """
        )
    )
    return RowAim(OVERVIEW_P99_MS, OVERVIEW_WINDOW_READS * int(window_rows or 0))


Case = tuple[str, str, Callable[[AsyncSession], Awaitable[Any]] | None, RowAim]


def _cases(someone: uuid.UUID, middle: str, overview_aim: RowAim) -> Sequence[Case]:
    """Each row: its name, its request, the service call explained for it, its aim."""

    async def order_page(db: AsyncSession, filters: orders.OrderFilter, cursor: str | None) -> Any:
        return await orders.filtered_order_page(
            await db.connection(), filters, limit=20, cursor=cursor
        )

    async def instance_page(db: AsyncSession, status: InstanceStatus | None) -> Any:
        return await instances.instance_page(
            await db.connection(), user_id=None, status=status, gpu=None, limit=50, cursor=None
        )

    async def overview(db: AsyncSession) -> Any:
        return await console.overview(await db.connection(), now=datetime.now(UTC))

    async def failed_events(db: AsyncSession) -> Any:
        return await inbox.event_page(
            await db.connection(), status=EventStatus.FAILED, event_type=None, limit=20, cursor=None
        )

    return (
        (
            "customer search: address prefix",
            "/api/v1/admin/customers?q=customer-1234",
            lambda s: accounts.search_accounts(s, "customer-1234", limit=20),
            LIST_AIM,
        ),
        (
            "customer search: a word of the name",
            "/api/v1/admin/customers?q=lovel",
            lambda s: accounts.search_accounts(s, "lovel", limit=20),
            LIST_AIM,
        ),
        (
            "customer search: id",
            f"/api/v1/admin/customers?q={someone}",
            lambda s: accounts.search_accounts(s, str(someone), limit=20),
            LIST_AIM,
        ),
        (
            "customer page (50 ledger entries)",
            f"/api/v1/admin/customers/{someone}",
            None,
            LIST_AIM,
        ),
        (
            "orders: first page",
            "/api/v1/admin/orders",
            lambda s: order_page(s, orders.order_filter(), None),
            LIST_AIM,
        ),
        (
            "orders: page at the 50,000th",
            f"/api/v1/admin/orders?cursor={middle}",
            lambda s: order_page(s, orders.order_filter(), middle),
            LIST_AIM,
        ),
        (
            "orders: refunded",
            "/api/v1/admin/orders?status=refunded",
            lambda s: order_page(s, orders.order_filter(status=OrderStatus.REFUNDED), None),
            LIST_AIM,
        ),
        (
            "orders: to review",
            "/api/v1/admin/orders?review=true",
            lambda s: order_page(s, orders.order_filter(needs_review=True), None),
            LIST_AIM,
        ),
        (
            "orders: one customer's",
            f"/api/v1/admin/orders?customer={someone}",
            lambda s: order_page(s, orders.order_filter(user_id=someone), None),
            LIST_AIM,
        ),
        (
            "instances: first page",
            "/api/v1/admin/instances",
            lambda s: instance_page(s, None),
            LIST_AIM,
        ),
        (
            "instances: running",
            "/api/v1/admin/instances?status=running",
            lambda s: instance_page(s, InstanceStatus.RUNNING),
            LIST_AIM,
        ),
        (
            "Stripe events: failed",
            "/api/v1/admin/events?status=failed",
            failed_events,
            LIST_AIM,
        ),
        ("overview", "/api/v1/admin/overview", overview, overview_aim),
    )


async def console_lists(environment: Environment, log: Any) -> list[ConsoleRow]:
    engine = create_engine(environment.settings)
    sessions = create_sessionmaker(engine)
    try:
        progress(
            f"writing {CUSTOMERS:,} accounts, {CUSTOMERS * ORDERS_PER_CUSTOMER:,} orders, their "
            f"refunds and instances, {CUSTOMERS * ENTRIES_PER_CUSTOMER:,} ledger entries and "
            f"{PROCESSED_EVENTS + FAILED_EVENTS:,} Stripe events"
        )
        async with unit_of_work(sessions) as db:
            await _seed(db)
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql("ANALYZE")
        async with running_app(environment, log) as app:
            async with unit_of_work(sessions) as db:
                token = await _admin(environment, db)
            async with sessions() as db:
                someone = await db.scalar(
                    text("SELECT id FROM users WHERE email = 'customer-12345@bench.invalid'")
                )
                # The cursor the API gives for the page after the 50,000th order.
                middle = (
                    await db.execute(
                        text(
                            "SELECT created_at, id FROM orders ORDER BY created_at DESC, id DESC "
                            "OFFSET 49999 LIMIT 1"
                        )
                    )
                ).one()
                overview_aim = await _overview_aim(db)
            assert isinstance(someone, uuid.UUID)
            cases = _cases(someone, encode_cursor(middle[0], str(middle[1])), overview_aim)
            rows = []
            async with httpx.AsyncClient(base_url=app.base_url, timeout=30) as client:
                progress("timing the floor, the console's lists and its overview")
                floor = await _timed(client, "/healthz", None)
                rows.append(ConsoleRow("GET /healthz (the floor)", floor, None, None))
                for name, path, run, aim in cases:
                    reads = None if run is None else await _reads(engine, run)
                    rows.append(ConsoleRow(name, await _timed(client, path, token), reads, aim))
            return rows
    finally:
        await engine.dispose()


def print_console(rows: Sequence[ConsoleRow]) -> None:
    say(
        f"console: {CUSTOMERS:,} accounts, {CUSTOMERS * ORDERS_PER_CUSTOMER:,} orders and their "
        f"instances, {CUSTOMERS * ENTRIES_PER_CUSTOMER:,} ledger entries, "
        f"{PROCESSED_EVENTS + FAILED_EVENTS:,} Stripe events; {REQUESTS} requests per row, one "
        "at a time, to one app process, as an admin"
    )
    table = [
        (
            row.name,
            f"{statistics.median(row.latencies_ms):.1f}",
            f"{row.percentile(0.99):.1f}",
            "-" if row.reads is None else f"{row.reads.rows:,}",
            "-" if row.reads is None else ", ".join(row.reads.seq_scans) or "none",
            "baseline" if row.aim is None else str(row.aim),
            verdict(row.met()),
        )
        for row in rows
    ]
    headers = ("row", "p50 ms", "p99 ms", "rows read", "seq scans", "aim", "met")
    for line in format_table(headers, table, left={0, 4, 5, 6}):
        say(line)
    say(
        f"  rows read: what the row's queries fetched or filtered away in {', '.join(BIG_TABLES)} "
        "(EXPLAIN ANALYZE of the statements the service sends, caught in this process); - "
        "where a row is not explained. The overview sums its windows (today, 7 and 30 days): "
        f"its aim is p99 < {OVERVIEW_P99_MS:.0f} ms and fewer rows read than "
        f"{OVERVIEW_WINDOW_READS} × those its 30-day windows hold (orders paid, instances run), "
        "through indexes, none older."
    )
    say()
