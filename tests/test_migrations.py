"""Migrations build exactly the schema the models describe, and can be undone and redone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from computebill.config import Settings
from computebill.db import create_engine
from computebill.devserver.scratch import create_database, drop_database
from computebill.migrations import alembic_config
from computebill.models import Base


@pytest.fixture
async def empty_database(service_urls: tuple[str, str]) -> AsyncIterator[Settings]:
    server_url, redis_url = service_urls
    database_url = await create_database(server_url, "computebill_migrations")
    yield Settings(database_url=database_url, redis_url=redis_url)
    await drop_database(database_url)


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_upgrade_matches_the_models_and_downgrade_undoes_it(
    empty_database: Settings,
) -> None:
    config = alembic_config(empty_database)
    engine = create_engine(empty_database)
    try:
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
            assert "worker_heartbeats" in await connection.run_sync(_tables)

        await asyncio.to_thread(command.downgrade, config, "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()

        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()
