"""The hot and sweep queries stay index lookups as the data grows: over a database of 100,000
orders (with their lines, instances, status changes, Stripe events, sessions and tokens, and
wallets, ledger entries, grants, top-ups and running pay-as-you-go instances, in proportions
like production's), no query that a page, a refresh or a sweep runs reads a large
table from end to end.

The statements are the ones the services run: each service is called for real (inside a
transaction rolled back afterwards) and every statement it sends is captured and planned with
`EXPLAIN (FORMAT JSON)` and the same parameters."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.auth import service as auth
from computebill.auth.revocations import RevocationList
from computebill.auth.tokens import RefreshTokenCrypto
from computebill.billing import service as billing
from computebill.cart import service as cart
from computebill.catalog.service import load_catalog, validate_configuration
from computebill.config import MailBackend, Settings
from computebill.console import service as console
from computebill.credits import service as credits
from computebill.db import create_engine, create_sessionmaker
from computebill.devserver.scratch import create_database, drop_database
from computebill.instances import metering
from computebill.instances import service as instances
from computebill.instances.models import InstanceStatus
from computebill.invoices import service as invoices
from computebill.mail import service as mail
from computebill.migrations import upgrade_to_head_async
from computebill.orders import service as orders
from computebill.orders.models import OrderStatus
from computebill.payments import events, inbox, recharge
from computebill.payments.models import EventStatus
from computebill.ratelimit import RateLimiter
from computebill.seed import seed_database

pytestmark = pytest.mark.slow

USERS = 10_000
ORDERS = 100_000
LARGE = 5_000  # rows from which reading a whole table is a fault
PROBE = 1  # the user whose pages are planned: ORDERS // USERS orders, like everyone

# Set-based, so 100,000 orders take seconds. Ids are made in order (random ones would scatter the
# index inserts): `seed_id(kind, n)`. Order n belongs to user n % USERS + 1 and was made n × 5
# minutes ago (about a year); most were paid and provisioned, a few are still pending.
SEED = [
    """
    CREATE FUNCTION pg_temp.seed_id(kind int, n bigint) RETURNS uuid IMMUTABLE LANGUAGE sql
    AS $$ SELECT (lpad(to_hex(kind), 8, '0') || '-0000-4000-8000-'
                  || lpad(to_hex(n), 12, '0'))::uuid $$
    """,
    """
    INSERT INTO users (id, email, password_changed_at, created_at, updated_at)
    SELECT pg_temp.seed_id(1, u), 'user' || u || '@example.com', now(), now(), now()
    FROM generate_series(1, :users) AS u
    """,
    """
    INSERT INTO stripe_customers (user_id, customer_id)
    SELECT pg_temp.seed_id(1, u), 'cus_seed' || u FROM generate_series(1, :users) AS u
    """,
    """
    INSERT INTO orders (id, user_id, status, currency, total_cents, refunded_cents,
        cart_fingerprint, checkout_session_id, checkout_url, checkout_expires_at,
        payment_intent_id, charge_id, paid_at, provisioned_at, needs_review, created_at,
        updated_at)
    SELECT pg_temp.seed_id(2, n), pg_temp.seed_id(1, n % :users + 1), c.status::order_status,
        'usd', 2000, CASE c.status WHEN 'refunded' THEN 2000 WHEN 'partially_refunded' THEN 1000
        ELSE 0 END,
        'seed', 'cs_seed' || n, 'https://checkout.example/' || n, t.at + interval '30 minutes',
        CASE WHEN c.paid THEN 'pi_seed' || n END, CASE WHEN c.paid THEN 'ch_seed' || n END,
        CASE WHEN c.paid THEN t.at + interval '1 minute' END,
        CASE WHEN c.paid AND n > 3 THEN t.at + interval '70 seconds' END,
        false, t.at, t.at
    FROM generate_series(1, :orders) AS n
    CROSS JOIN LATERAL (SELECT now() - n * interval '5 minutes' AS at) AS t
    CROSS JOIN LATERAL (
        SELECT n % 100 <= 90 AS paid, CASE
            WHEN n % 100 < 85 THEN 'paid'
            WHEN n % 100 < 89 THEN 'refunded'
            WHEN n % 100 = 89 THEN 'partially_refunded'
            WHEN n % 100 = 90 THEN 'disputed'
            WHEN n % 100 < 98 THEN 'expired'
            WHEN n % 100 = 98 THEN 'canceled'
            WHEN n < 2000 THEN 'pending'
            ELSE 'payment_failed'
        END AS status
    ) AS c
    """,
    # One line, or two for even orders; a third of the lines buy two machines.
    """
    INSERT INTO order_lines (id, order_id, position, gpu_model_id, gpu_slug, gpu_name, gpu_count,
        vcpus, storage_gb, hours, region, quantity, gpu_hour_cents, vcpu_hour_millicents,
        storage_gb_hour_millicents, unit_total_cents, line_total_cents)
    SELECT pg_temp.seed_id(3, 2 * n + p), pg_temp.seed_id(2, n), p, m.id, m.slug, m.name,
        2, 24, 500, 1 + n % 8, 'us-east-1', 1 + (n + p) % 3 / 2, 249, 5000, 100, 1000,
        1000 * (1 + (n + p) % 3 / 2)
    FROM generate_series(1, :orders) AS n
    CROSS JOIN generate_series(0, 1) AS p
    JOIN (SELECT id, slug, name, row_number() OVER (ORDER BY slug) - 1 AS k,
                 count(*) OVER () AS models FROM gpu_models) AS m ON m.k = (n + p) % m.models
    WHERE p = 0 OR n % 2 = 0
    ORDER BY n, p
    """,
    """
    INSERT INTO order_status_changes (order_id, from_status, to_status, reason, changed_at)
    SELECT o.id, NULL::order_status, 'pending'::order_status, 'seed', o.created_at
    FROM orders AS o
    UNION ALL
    SELECT o.id, 'pending', CASE WHEN o.paid_at IS NULL THEN o.status ELSE 'paid' END, 'seed',
        o.created_at + interval '1 minute'
    FROM orders AS o WHERE o.status <> 'pending'
    UNION ALL
    SELECT o.id, 'paid', o.status, 'seed', o.created_at + interval '1 day'
    FROM orders AS o
    WHERE o.status IN ('refunded', 'partially_refunded', 'disputed')
    """,
    """
    INSERT INTO refunds (id, order_id, refund_id, amount_cents, status, created_at)
    SELECT gen_random_uuid(), o.id, 're_seed' || o.id, o.refunded_cents, 'succeeded',
        o.created_at + interval '1 day'
    FROM orders AS o WHERE o.refunded_cents > 0
    """,
    # The machines of provisioned orders: the newest few hundred still running, the rest ended.
    """
    INSERT INTO instances (id, user_id, order_id, order_line_id, index, name, gpu_slug, gpu_name,
        gpu_count, vcpus, storage_gb, region, paid_seconds, paid_cents, status, provider_id,
        ip_address, ssh_user, ssh_port, launch_requested_at, polls, started_at, expires_at,
        terminated_at, created_at, updated_at)
    SELECT pg_temp.seed_id(4, 2 * key.k + i), o.user_id, o.id, l.id, i,
        'seed-' || key.k || '-' || i, l.gpu_slug, l.gpu_name, l.gpu_count, l.vcpus,
        l.storage_gb, l.region, l.hours * 3600, l.unit_total_cents, s.status::instance_status,
        'sim-seed-' || key.k || '-' || i, '203.0.113.7', 'ubuntu', 22, o.provisioned_at, 1,
        o.provisioned_at + interval '30 seconds',
        o.provisioned_at + interval '30 seconds' + l.hours * interval '1 hour',
        CASE WHEN s.status <> 'running' THEN o.provisioned_at + interval '1 hour' END,
        o.provisioned_at, o.provisioned_at
    FROM order_lines AS l
    JOIN orders AS o ON o.id = l.order_id
    CROSS JOIN LATERAL (SELECT ('x' || right(l.id::text, 12))::bit(48)::bigint AS k) AS key
    CROSS JOIN LATERAL generate_series(0, l.quantity - 1) AS i
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN o.provisioned_at > now() - interval '1 day' AND o.status = 'paid' THEN 'running'
            WHEN o.status = 'disputed' THEN 'suspended'
            ELSE 'terminated'
        END AS status
    ) AS s
    WHERE o.provisioned_at IS NOT NULL
    ORDER BY l.id, i
    """,
    # Each instance's history up to running (the rest of it adds nothing the queries read).
    """
    INSERT INTO instance_status_changes (instance_id, from_status, to_status, reason, changed_at)
    SELECT i.id, NULL::instance_status, 'provisioning'::instance_status, 'seed', i.created_at
    FROM instances AS i
    UNION ALL
    SELECT i.id, 'provisioning', 'running', 'seed', i.started_at FROM instances AS i
    """,
    # Two events an order (its session completed, then its charge), all processed but the newest.
    """
    INSERT INTO stripe_events (id, type, created, payload, received_at, status, attempts,
        processed_at, outcome)
    SELECT 'evt_seed' || n || '_' || k, 'checkout.session.completed', t.at,
        '{"object": "event"}'::jsonb, t.at + k * interval '1 minute',
        CASE WHEN n <= 5 THEN 'pending' ELSE 'processed' END::stripe_event_status,
        CASE WHEN n <= 5 THEN 0 ELSE 1 END,
        CASE WHEN n > 5 THEN t.at + k * interval '1 minute' END, 'seed'
    FROM generate_series(1, :orders) AS n
    CROSS JOIN generate_series(1, 2) AS k
    CROSS JOIN LATERAL (SELECT now() - n * interval '5 minutes' AS at) AS t
    """,
    # Four logins a user, most long over, each with its chain of three refresh tokens and an
    # audit event for each.
    """
    INSERT INTO auth_sessions (id, user_id, user_agent, ip_address, last_used_at,
        authenticated_at, idle_expires_at, absolute_expires_at, created_at, updated_at)
    SELECT pg_temp.seed_id(5, 4 * u + k), pg_temp.seed_id(1, u), 'seed', '192.0.2.1',
        now() - k * interval '30 days', now() - k * interval '30 days',
        now() - k * interval '30 days' + interval '14 days',
        now() - k * interval '30 days' + interval '30 days', now() - k * interval '30 days', now()
    FROM generate_series(1, :users) AS u CROSS JOIN generate_series(0, 3) AS k
    ORDER BY u, k
    """,
    """
    INSERT INTO refresh_tokens (id, session_id, token_hash, parent_id, created_at, used_at)
    SELECT pg_temp.seed_id(6, 3 * s + j), pg_temp.seed_id(5, s), sha256(int8send(3 * s + j)),
        CASE WHEN j > 0 THEN pg_temp.seed_id(6, 3 * s + j - 1) END,
        now() - j * interval '1 hour', CASE WHEN j < 2 THEN now() END
    FROM generate_series(4, 4 * :users + 3) AS s CROSS JOIN generate_series(0, 2) AS j
    ORDER BY s, j
    """,
    """
    INSERT INTO auth_events (type, user_id, session_id, ip_address, user_agent, created_at)
    SELECT CASE WHEN j = 0 THEN 'login' ELSE 'refresh' END, pg_temp.seed_id(1, s / 4),
        pg_temp.seed_id(5, s), '192.0.2.1', 'seed', now() - j * interval '1 hour'
    FROM generate_series(4, 4 * :users + 3) AS s CROSS JOIN generate_series(0, 2) AS j
    """,
    # A cart for one user in three.
    """
    INSERT INTO cart_items (id, user_id, gpu_model_id, gpu_count, vcpus, storage_gb, hours, region,
        quantity, added_gpu_hour_cents, added_vcpu_hour_millicents,
        added_storage_gb_hour_millicents)
    SELECT gen_random_uuid(), pg_temp.seed_id(1, u), m.id, 2, 24, 500, 4, 'us-east-1', 1, 249,
        5000, 100
    FROM generate_series(1, :users) AS u
    JOIN (SELECT id, row_number() OVER (ORDER BY slug) - 1 AS k, count(*) OVER () AS models
          FROM gpu_models) AS m ON m.k = u % m.models
    WHERE u % 3 = 1
    """,
    # Credit: a wallet per user with a paid top-up, ten usage entries per user, a grant per user
    # (a third already spent, expiring hour by hour over six weeks), and 200 pay-as-you-go instances
    # running (one account in fifty) among the 100,000 fixed-hours ones.
    """
    INSERT INTO credit_accounts (user_id, balance_millicents, created_at, updated_at)
    SELECT pg_temp.seed_id(1, u), 100000000, now(), now() FROM generate_series(1, :users) AS u
    """,
    """
    INSERT INTO credit_top_ups (id, user_id, status, amount_cents, currency, refunded_cents,
        checkout_session_id, payment_intent_id, paid_at, created_at, updated_at)
    SELECT pg_temp.seed_id(20, u), pg_temp.seed_id(1, u), 'paid', 100000, 'usd', 0,
        'cs_topup_seed' || u, 'pi_topup_seed' || u, now() - interval '40 days',
        now() - interval '40 days', now() - interval '40 days'
    FROM generate_series(1, :users) AS u
    """,
    """
    INSERT INTO credit_entries (id, user_id, kind, amount_millicents, balance_after_millicents,
        idempotency_key, payment_intent_id, expires_at, created_at)
    SELECT pg_temp.seed_id(21, u), pg_temp.seed_id(1, u), 'top_up', 100000000, 100000000,
        'top_up:pi_topup_seed' || u, 'pi_topup_seed' || u, NULL, now() - interval '40 days'
    FROM generate_series(1, :users) AS u
    UNION ALL
    SELECT pg_temp.seed_id(22, u), pg_temp.seed_id(1, u), 'grant', 500000, 100500000,
        'grant:seed' || u, NULL, now() + (u % 1000 + 1) * interval '1 hour',
        now() - interval '39 days'
    FROM generate_series(1, :users) AS u
    UNION ALL
    SELECT pg_temp.seed_id(23, n), pg_temp.seed_id(1, n % :users + 1), 'usage', -1000, 0,
        'usage:seed:' || n, NULL, NULL, now() - n * interval '5 minutes'
    FROM generate_series(1, :orders) AS n
    """,
    """
    INSERT INTO credit_grants (grant_entry_id, user_id, amount_millicents, remaining_millicents,
        expires_at, created_at, updated_at)
    SELECT pg_temp.seed_id(22, u), pg_temp.seed_id(1, u), 500000,
        CASE WHEN u % 3 = 0 THEN 0 ELSE 500000 END, now() + (u % 1000 + 1) * interval '1 hour',
        now() - interval '39 days', now() - interval '39 days'
    FROM generate_series(1, :users) AS u
    """,
    # Auto-recharge: every user has a rule, one in ten enabled (a few of those paused); each
    # recharged once 20 days ago, and one in a hundred has a charge in flight since 10 minutes.
    """
    INSERT INTO credit_top_ups (id, user_id, status, amount_cents, currency, refunded_cents,
        payment_intent_id, paid_at, source, created_at, updated_at)
    SELECT pg_temp.seed_id(30, u), pg_temp.seed_id(1, u),
        CASE WHEN u % 100 = 0 THEN 'pending' ELSE 'paid' END::credit_top_up_status, 2500,
        'usd', 0, CASE WHEN u % 100 <> 0 THEN 'pi_recharge_seed' || u END,
        CASE WHEN u % 100 <> 0 THEN now() - interval '20 days' END, 'auto_recharge',
        now() - interval '20 days', now() - interval '20 days'
    FROM generate_series(1, :users) AS u
    """,
    """
    INSERT INTO auto_recharge_attempts (id, user_id, crossing, attempt, top_up_id, amount_cents,
        stripe_idempotency_key, stripe_payment_method_id, payment_intent_id, status, created_at,
        finished_at)
    SELECT pg_temp.seed_id(31, u), pg_temp.seed_id(1, u), 1, 1, pg_temp.seed_id(30, u), 2500,
        'recharge:' || pg_temp.seed_id(1, u) || chr(58) || '1', 'pm_seed' || u,
        CASE WHEN u % 100 <> 0 THEN 'pi_recharge_seed' || u END,
        CASE WHEN u % 100 = 0 THEN 'pending' ELSE 'succeeded' END::auto_recharge_attempt_status,
        now() - CASE WHEN u % 100 = 0 THEN interval '10 minutes' ELSE interval '20 days' END,
        CASE WHEN u % 100 <> 0 THEN now() - interval '20 days' END
    FROM generate_series(1, :users) AS u
    """,
    """
    INSERT INTO auto_recharge_rules (user_id, enabled, threshold_cents, amount_cents, armed,
        crossings, consecutive_failures, paused_reason, in_flight_top_up_id, created_at,
        updated_at)
    SELECT pg_temp.seed_id(1, u), u % 10 = 0, 1000, 2500, u % 100 <> 0, 1, 0,
        CASE WHEN u % 1000 = 10 THEN 'seeded pause' END,
        CASE WHEN u % 100 = 0 THEN pg_temp.seed_id(30, u) END, now(), now()
    FROM generate_series(1, :users) AS u
    """,
    """
    INSERT INTO instances (id, user_id, billing, index, name, gpu_slug, gpu_name, gpu_count,
        vcpus, storage_gb, region, rate_millicents_per_hour, status, polls,
        billed_through_seconds, launch_requested_at, started_at, created_at, updated_at)
    SELECT pg_temp.seed_id(24, n), pg_temp.seed_id(1, n % :users + 1), 'pay_as_you_go', 0,
        'payg-' || n, 'nvidia-h100', 'NVIDIA H100', 1, 12, 100, 'us-east-1', 2500000,
        'running', 0, 0, now() - interval '1 hour', now() - interval '1 hour', now(), now()
    FROM generate_series(1, 200) AS n
    """,
    # A monthly budget for one account in five, counted through the seeded entries. (The budgets'
    # pass reads every budget, by design; what it must not read whole is the ledger.)
    """
    INSERT INTO credit_budgets (user_id, monthly_limit_cents, stop_running, month,
        spent_millicents, counted_through_position, alerted_percent, created_at, updated_at)
    SELECT pg_temp.seed_id(1, u), 50000, u % 2 = 0, date_trunc('month', now())::date, 0,
        (SELECT max(position) FROM credit_entries), 0, now(), now()
    FROM generate_series(1, :users) AS u
    WHERE u % 5 = 0
    """,
    # An e-mail per order: all sent but one in a thousand, queued since an hour ago.
    """
    INSERT INTO outbox_emails (id, dedupe_key, recipient, subject, body, status, attempts,
        next_attempt_at, sent_at, created_at)
    SELECT gen_random_uuid(), 'receipt:' || o, 'user' || o || '@example.com', 'Receipt',
        'Thank you for your order.', CASE WHEN o % 1000 = 0 THEN 'queued' ELSE 'sent' END, 1,
        CASE WHEN o % 1000 = 0 THEN now() - interval '1 hour' END,
        CASE WHEN o % 1000 = 0 THEN NULL ELSE now() END, now() - interval '1 hour'
    FROM generate_series(1, :orders) AS o
    """,
]


def _user(n: int) -> uuid.UUID:
    """The seeded user n's id (the seed's `seed_id(1, n)`)."""
    return uuid.UUID(f"{1:08x}-0000-4000-8000-{n:012x}")


@dataclass
class Seeded:
    engine: AsyncEngine
    settings: Settings
    refresh_token: str  # a live refresh token of the probe user
    large_tables: frozenset[str]


@pytest.fixture(scope="module")
async def seeded(settings: Settings, service_urls: tuple[str, str]) -> AsyncIterator[Seeded]:
    database_url = await create_database(service_urls[0], "computebill_plans")
    own = settings.model_copy(update={"database_url": database_url})
    engine = create_engine(own)
    try:
        await upgrade_to_head_async(own)
        await seed_database(own)
        crypto = RefreshTokenCrypto(own.required_token_pepper)
        token = secrets.token_urlsafe(32)
        async with engine.begin() as connection:
            await connection.execute(text("SET LOCAL synchronous_commit = off"))
            for statement in SEED:
                await connection.execute(text(statement), {"users": USERS, "orders": ORDERS})
            # The probe's newest session gets a fresh, unspent token.
            await connection.execute(
                text(
                    """
                    UPDATE auth_sessions SET last_used_at = now(),
                        idle_expires_at = now() + interval '1 day',
                        absolute_expires_at = now() + interval '30 days'
                    WHERE id = pg_temp.seed_id(5, 4 * :user)
                    """
                ),
                {"user": PROBE},
            )
            await connection.execute(
                text(
                    """
                    INSERT INTO refresh_tokens (id, session_id, token_hash, created_at)
                    VALUES (gen_random_uuid(), pg_temp.seed_id(5, 4 * :user), :hash,
                            now())
                    """
                ),
                {"user": PROBE, "hash": crypto.digest(token)},
            )
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
            large = await connection.scalars(
                text(
                    "SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples >= :large "
                    "AND relnamespace = 'public'::regnamespace"
                ),
                {"large": LARGE},
            )
            large_tables = frozenset(large)
        yield Seeded(engine, own, token, large_tables)
    finally:
        await engine.dispose()
        await drop_database(database_url)


@contextmanager
def captured(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the engine sends meanwhile, with its parameters."""
    statements: list[tuple[str, Any]] = []

    def note(
        connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plans(db: AsyncSession, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """The planner's plan of each statement that reads rows, with the parameters it ran with."""
    connection = await (await db.connection()).get_raw_connection()
    driver = connection.driver_connection
    assert driver is not None
    plans = []
    for statement, parameters in statements:
        if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            continue
        answer = await driver.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *(parameters or ()))
        plan = json.loads(answer) if isinstance(answer, str) else answer
        plans.append(plan[0]["Plan"] | {"Statement": statement})
    return plans


Query = Callable[[AsyncSession, Seeded, datetime], Awaitable[object]]


async def _order_list_pages(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    read = await db.connection()
    first = await orders.order_page(read, user_id=_user(PROBE), limit=20, cursor=None)
    await orders.order_page(read, user_id=_user(PROBE), limit=20, cursor=first.next_cursor)


async def _instance_list(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    """The dashboard: whether more instances (or hours) are on their way, and the instances."""
    await instances.instances_expected(db, user_id=_user(PROBE), now=now)
    await instances.list_instances(await db.connection(), user_id=_user(PROBE))


async def _header_money(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    """What every signed-in page reads for its header: the balance, and the credit banner."""
    await billing.header_figures(db, _user(PROBE), now=now)


async def _order_detail(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    page = await orders.order_page(
        await db.connection(), user_id=_user(PROBE), limit=1, cursor=None
    )
    await orders.get_order(db, user_id=_user(PROBE), order_id=uuid.UUID(page.orders[0].id))


async def _refresh(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    redis = aioredis.Redis.from_url(str(seeded.settings.redis_url))
    try:
        outcome = await auth.rotate_refresh_token(
            db,
            token=seeded.refresh_token,
            crypto=RefreshTokenCrypto(seeded.settings.required_token_pepper),
            revocations=RevocationList(
                redis, namespace=seeded.settings.redis_namespace, ttl_seconds=60
            ),
            rate_limiter=RateLimiter(
                seeded.settings.required_redis_url, namespace=seeded.settings.redis_namespace
            ),
            settings=seeded.settings,
            now=now,
            client=auth.Client(ip_address="192.0.2.1", user_agent="plans"),
        )
    finally:
        await redis.aclose()
    assert isinstance(outcome, auth.Issued), outcome


async def _cart(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    await cart.priced_cart(db, user_id=_user(PROBE), catalog=await load_catalog(db))


async def _cart_add(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    catalog = await load_catalog(db)
    valid = validate_configuration(
        catalog, gpu="nvidia-h100", gpu_count=1, vcpus=12, storage_gb=100, hours=3, region=None
    )
    lines = await cart.add_item(db, user_id=_user(PROBE), catalog=catalog, valid=valid)
    assert len(lines) == 2, lines  # the seeded line and this one


async def _instance_sweep(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    """Overdue expiries, stuck launches and stops, orders short of instances, lost stops."""
    await instances.sweep(db, now=now, stale_after=timedelta(seconds=60))


async def _expiry_warnings(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    """Running fixed-hours instances in their last hour (the e-mails' inserts are rolled back)."""
    await instances.send_expiry_warnings(
        db, backend=MailBackend.OUTBOX, public_base_url="https://cloud.example.com", now=now
    )


async def _reconciliation(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    await events.pending_orders_to_reconcile(db, now=now)


async def _unprocessed_events(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    await inbox.requeue_unprocessed_events(db, now=now, sweep_after=timedelta(seconds=60))


async def _credits_summary(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    """`GET /api/v1/credits` and the ledger's first page."""
    read = await db.connection()
    await billing.credit_summary(read, _user(PROBE), now=now)
    await credits.entries_page(read, _user(PROBE), cursor=None, limit=20)


async def _settlement_pass(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    settled = await metering.settle_all(db, now=now)
    assert settled.instances == 200, settled


async def _credit_cap_sweep(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    await instances.sweep_credit_caps(db, margin_seconds=60, now=now)


async def _grant_expiry(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    await credits.expire_due_grants(db, now=now + timedelta(hours=2, minutes=30))  # a few


async def _budget_pass(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    """After a settlement pass: every budget counted up to date, then those due."""
    await metering.budgets_due(db, now=now)


async def _launch_budget_check(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    await metering.budget_spend(db, _user(5), now=now)


async def _top_ups_to_reconcile(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    await events.pending_top_ups_to_reconcile(db, now=now)


async def _statement_of_a_month(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    """A month's statement of an account (its balances either side, its entries grouped) and the
    invoice list; issuing reads every account once a month, by design, so is not planned here."""
    await invoices.month_figures(db, _user(PROBE), invoices.previous_month(now))
    await invoices.invoices_page(await db.connection(), _user(PROBE), cursor=None, limit=20)


async def _auto_recharge_check(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    """The check's candidates and their live balances, and a charge's monthly total."""
    first = await recharge.candidates(db, now=now)
    assert first.next_after is not None
    assert not first.due, first  # every seeded balance is above its threshold
    await recharge.candidates(db, now=now, after=first.next_after)
    await recharge.succeeded_this_month(db, _user(PROBE), now=now)


async def _auto_recharge_reconciliation(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    stale = await recharge.stale_attempts(db, now=now, older_than=timedelta(minutes=5))
    assert len(stale) == USERS // 100, stale


async def _email_sweep(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    assert await mail.ask_again_for_lost(db, now=now) == ORDERS // 1000


async def _console_orders(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    read = await db.connection()
    every = orders.order_filter()
    first = await orders.filtered_order_page(read, every, limit=25, cursor=None)
    await orders.filtered_order_page(read, every, limit=25, cursor=first.next_cursor)
    for filters in (
        orders.order_filter(needs_review=True),
        orders.order_filter(status=OrderStatus.PENDING),
        orders.order_filter(since=(now - timedelta(days=3)).date(), until=now.date()),
        orders.order_filter(user_id=_user(PROBE)),
    ):
        await orders.filtered_order_page(read, filters, limit=25, cursor=None)
    order = (await orders.get_order(db, user_id=None, order_id=uuid.UUID(first.orders[0].id))).order
    stripe_ids = [order.checkout_session_id, order.payment_intent_id, order.charge_id]
    await inbox.events_about(db, [object_id for object_id in stripe_ids if object_id])


async def _console_inbox(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    read = await db.connection()
    first = await inbox.event_page(read, status=None, event_type=None, limit=25, cursor=None)
    await inbox.event_page(read, status=None, event_type=None, limit=25, cursor=first.next_cursor)
    await inbox.event_page(read, status=EventStatus.FAILED, event_type=None, limit=25, cursor=None)
    await inbox.event_page(read, status=None, event_type="charge.refunded", limit=25, cursor=None)


async def _console_instances(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    read = await db.connection()
    _, cursor = await instances.instance_page(
        read, user_id=None, status=None, gpu=None, limit=50, cursor=None
    )
    assert cursor is not None
    await instances.instance_page(
        read, user_id=None, status=None, gpu=None, limit=50, cursor=cursor
    )
    for status in (InstanceStatus.RUNNING, InstanceStatus.FAILED):
        await instances.instance_page(
            read, user_id=None, status=status, gpu=None, limit=50, cursor=None
        )
    await instances.instance_page(
        read, user_id=_user(PROBE), status=None, gpu=None, limit=50, cursor=None
    )


async def _console_overview(db: AsyncSession, seeded: Seeded, now: datetime) -> None:
    await console.overview(await db.connection(), now=now)


QUERIES: dict[str, Query] = {
    "a user's order list, first and second page": _order_list_pages,
    "a user's instance list (dashboard)": _instance_list,
    "the page header's balance and credit banner": _header_money,
    "an order's detail": _order_detail,
    "refresh-token rotation": _refresh,
    "the cart": _cart,
    "adding to the cart": _cart_add,
    "instance sweep (expiries, stuck, unprovisioned, unstopped, orphaned)": _instance_sweep,
    "fixed-hours instances in their last hour": _expiry_warnings,
    "pending orders to reconcile": _reconciliation,
    "unprocessed Stripe events": _unprocessed_events,
    "a user's credit summary and ledger": _credits_summary,
    "a settlement pass (200 running pay-as-you-go instances)": _settlement_pass,
    "the credit cap's sweep": _credit_cap_sweep,
    "grant expiry": _grant_expiry,
    "pending top-ups to reconcile": _top_ups_to_reconcile,
    "the budgets' pass": _budget_pass,
    "a launch's budget check": _launch_budget_check,
    "a month's statement and the invoice list": _statement_of_a_month,
    "the auto-recharge check": _auto_recharge_check,
    "auto-recharge attempts to reconcile": _auto_recharge_reconciliation,
    "queued e-mails whose delivery job was lost": _email_sweep,
    "the console's order lists and an order's Stripe events": _console_orders,
    "the console's Stripe inbox": _console_inbox,
    "the console's instance lists": _console_instances,
    "the console's overview": _console_overview,
}


async def test_no_hot_or_sweep_query_reads_a_large_table_whole(seeded: Seeded) -> None:
    assert {
        "orders",
        "order_lines",
        "instances",
        "stripe_events",
        "refresh_tokens",
        "credit_accounts",
        "credit_entries",
        "credit_grants",
        "credit_top_ups",
        "auto_recharge_rules",
        "auto_recharge_attempts",
        "outbox_emails",
    } <= seeded.large_tables
    now = datetime.now(UTC)
    faults: list[str] = []
    sessions = create_sessionmaker(seeded.engine)
    for name, query in QUERIES.items():
        async with sessions() as db:
            with captured(seeded.engine) as statements:
                await query(db, seeded, now)
            plans = await _plans(db, statements)
            await db.rollback()
        assert plans, f"{name}: no statement was captured"
        for plan in plans:
            for node in _nodes(plan):
                if (
                    node["Node Type"] == "Seq Scan"
                    and node.get("Relation Name") in seeded.large_tables
                ):
                    faults.append(
                        f"{name}: reads all of {node['Relation Name']} in\n  {plan['Statement']}"
                    )
    assert not faults, "\n".join(faults)
