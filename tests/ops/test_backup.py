"""`computebill backup`, `restore` and `reset`, as processes on a database of the test's own:
orders, payments' events and ledger entries backed up, wiped by a reset, restored row for row,
and the ledger verified after."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from computebill.config import Settings
from computebill.credits.models import EntryKind
from computebill.db import unit_of_work
from computebill.devserver.backup import (
    OperationError,
    backup,
    client_tools,
    reset,
    restore,
    tool_environment,
)
from computebill.devserver.embedded import EmbeddedPostgres, free_port
from computebill.devserver.scratch import Sessions, database
from computebill.devserver.supervisor import STATE_FILE, DataDirLock
from computebill.payments.models import EventStatus, StripeEvent
from tests.credits.ledger import add_user, grant, post
from tests.support.database import own_database
from tests.support.orders import add_paid_order
from tests.support.settings import run_cli

# The tables whose every row must come back, and a digest of their contents.
KEPT_TABLES = (
    "users",
    "orders",
    "order_lines",
    "credit_accounts",
    "credit_entries",
    "credit_grants",
    "stripe_events",
    "gpu_models",
)


@pytest.fixture
async def own(settings: Settings, service_urls: tuple[str, str]) -> AsyncIterator[Settings]:
    async with own_database(settings, service_urls[0]) as own_settings:
        yield own_settings


async def add_records(sessions: Sessions) -> None:
    """Three customers, each with a paid order, a top-up's event, and ledger entries."""
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as db:
        for number in range(3):
            user_id = await add_user(db)
            await add_paid_order(db, user_id, [("nvidia-h100", number + 1, 2)], now=now)
            payment_intent = f"pi_backup_{uuid.uuid4().hex}"
            await post(db, user_id, EntryKind.TOP_UP, 2_500_000, payment_intent_id=payment_intent)
            await post(db, user_id, EntryKind.ADJUSTMENT, -12_345, reason="backup test")
            await grant(db, user_id, 100_000, expires_at=None, now=now)
            db.add(
                StripeEvent(
                    id=f"evt_backup_{uuid.uuid4().hex}",
                    type="payment_intent.succeeded",
                    created=now,
                    payload={"data": {"object": {"id": payment_intent}}},
                    received_at=now,
                    status=EventStatus.PROCESSED,
                    attempts=1,
                    processed_at=now,
                    outcome="credited",
                )
            )


async def contents(settings: Settings) -> dict[str, tuple[int, str | None]]:
    """Each kept table's row count and the MD5 of its rows, in a fixed order."""
    found: dict[str, tuple[int, str | None]] = {}
    async with database(settings) as sessions, sessions() as db:
        for table in KEPT_TABLES:
            digest = text(
                f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"  # noqa: S608 - one of the constant names above
            )
            count, md5 = (await db.execute(digest)).one()
            found[table] = (count, md5)
    return found


async def test_a_backup_restores_every_row_after_a_reset(own: Settings, tmp_path: Path) -> None:
    async with database(own) as sessions:
        await add_records(sessions)
    before = await contents(own)
    assert before["orders"][0] == 3
    assert before["credit_entries"][0] == 9
    backup_file = tmp_path / "computebill.dump"

    status, output = await run_cli(own, "backup", "--to", str(backup_file))
    assert status == 0, output
    assert backup_file.stat().st_size > 0
    assert not (tmp_path / "computebill.dump.partial").exists()

    status, output = await run_cli(own, "reset", "--yes")
    assert status == 0, output
    wiped = await contents(own)
    assert wiped["orders"][0] == wiped["credit_entries"][0] == wiped["stripe_events"][0] == 0
    assert wiped["gpu_models"][0] == before["gpu_models"][0]  # the catalog seeded again

    status, output = await run_cli(own, "restore", "--from", str(backup_file), "--yes")
    assert status == 0, output
    assert "the latest this version knows" in output
    assert await contents(own) == before

    status, output = await run_cli(own, "credits", "verify")
    assert (status, output.strip()) == (0, "ledger OK: every balance equals the sum of its entries")


async def test_restore_refuses_a_file_that_is_no_backup_before_dropping_anything(
    own: Settings, tmp_path: Path
) -> None:
    async with database(own) as sessions:
        await add_records(sessions)
    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("not a dump")

    status, output = await run_cli(own, "restore", "--from", str(not_a_backup), "--yes")
    assert status == 2, output
    assert "is not a backup" in output
    status, output = await run_cli(own, "restore", "--from", str(tmp_path / "absent"), "--yes")
    assert (status, output.strip()) == (2, f"computebill restore: no backup file {tmp_path}/absent")
    assert (await contents(own))["orders"][0] == 3


async def test_reset_refuses_in_production_and_asks_first(own: Settings) -> None:
    async with database(own) as sessions:
        await add_records(sessions)

    production = own.model_copy(update={"environment": "production"})
    status, output = await run_cli(production, "reset", "--yes")
    assert (status, output.strip()) == (2, "computebill reset: refused, ENVIRONMENT is production")

    # The command line's stdin is not a terminal: without --yes nothing is asked, nor done.
    status, output = await run_cli(own, "reset")
    assert status == 2, output
    assert "Drop " in output
    assert "pass --yes" in output
    assert (await contents(own))["orders"][0] == 3


def test_client_tools_older_than_the_server_are_refused(tmp_path: Path) -> None:
    for tool in ("pg_dump", "pg_restore"):
        script = tmp_path / tool
        script.write_text(f"#!/bin/sh\necho '{tool} (PostgreSQL) 14.2'\n")
        script.chmod(0o755)

    assert client_tools(14, tmp_path) == tmp_path
    assert client_tools(13, tmp_path) == tmp_path  # newer tools read older servers
    with pytest.raises(OperationError, match="the server is PostgreSQL 18") as refused:
        client_tools(18, tmp_path)
    assert refused.value.status == 2


def test_the_tools_get_the_password_in_their_environment() -> None:
    environment = tool_environment("postgresql://billing:s3cr%40t@db.example:6543/app?ssl=require")
    assert (
        environment.items()
        >= {
            "PGHOST": "db.example",
            "PGPORT": "6543",
            "PGUSER": "billing",
            "PGPASSWORD": "s3cr@t",
            "PGDATABASE": "app",
            "PGSSLMODE": "require",
        }.items()
    )


@pytest.mark.slow
async def test_the_embedded_database_of_a_data_directory(own: Settings, tmp_path: Path) -> None:
    """Without DATABASE_URL: the PostgreSQL of the `up` running in the data directory, or, with
    none running, one the command starts for itself; the wheel's tools either way."""
    data_dir = tmp_path / "data"
    postgres = EmbeddedPostgres(data_dir / "postgres", free_port())
    lock = DataDirLock(data_dir)
    embedded = own.model_copy(update={"database_url": None})
    running = own.model_copy(update={"database_url": postgres.url})
    try:
        # As `up` leaves it: the directory locked, the server's URL recorded.
        await asyncio.to_thread(postgres.start)
        lock.acquire()
        (data_dir / STATE_FILE).write_text(json.dumps({"postgres": {"url": postgres.url}}))

        said = await asyncio.to_thread(reset, embedded, data_dir, yes=True)
        assert said.startswith(f"computebill on 127.0.0.1:{postgres.port} reset"), said
        async with database(running) as sessions:
            await add_records(sessions)
        before = await contents(running)
        said = await asyncio.to_thread(backup, embedded, data_dir, tmp_path / "up.dump")
        assert str(postgres.bin) in said
        await asyncio.to_thread(reset, embedded, data_dir, yes=True)
        assert (await contents(running))["orders"][0] == 0
        await asyncio.to_thread(restore, embedded, data_dir, tmp_path / "up.dump", yes=True)
        assert await contents(running) == before
    finally:
        postgres.stop()
        lock.release()

    said = await asyncio.to_thread(backup, embedded, data_dir, tmp_path / "stopped.dump")
    assert said.startswith("computebill on 127.0.0.1:"), said
    assert (tmp_path / "stopped.dump").stat().st_size > 0
