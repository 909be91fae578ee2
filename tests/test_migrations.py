"""Migrations build exactly the schema the models describe, and can be undone and redone."""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, inspect, text

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


async def test_machine_images_get_their_vendor_and_a_default_for_every_gpu_steps_down(
    empty_database: Settings,
) -> None:
    """A catalog from before vendors: its CUDA images become NVIDIA's (its CUDA default stays
    NVIDIA's default), and an image without CUDA that was the default is one no longer."""
    config = alembic_config(empty_database)
    engine = create_engine(empty_database)
    images = [
        ("cuda", '[{"name": "Ubuntu", "version": "24.04"}, {"name": "CUDA", "version": "12.6"}]'),
        ("bare", '[{"name": "Ubuntu", "version": "24.04"}]'),
    ]
    try:
        for default in ("cuda", "bare"):
            await asyncio.to_thread(command.upgrade, config, "d7e3f9b5a824")
            async with engine.begin() as connection:
                for slug, versions in images:
                    await connection.execute(
                        text(
                            "INSERT INTO machine_images (id, slug, name, description, versions,"
                            " is_default, active, position) VALUES (gen_random_uuid(), :slug,"
                            " :slug, :slug, CAST(:versions AS jsonb), :is_default, true, 0)"
                        ),
                        {"slug": slug, "versions": versions, "is_default": slug == default},
                    )
            await asyncio.to_thread(command.upgrade, config, "e8f4a0c6b935")
            async with engine.begin() as connection:
                rows = await connection.execute(
                    text("SELECT slug, vendor::text, is_default FROM machine_images ORDER BY slug")
                )
                assert [tuple(row) for row in rows] == [
                    ("bare", None, False),
                    ("cuda", "nvidia", default == "cuda"),
                ]
                await connection.execute(text("DELETE FROM machine_images"))
            await asyncio.to_thread(command.downgrade, config, "d7e3f9b5a824")
    finally:
        await engine.dispose()


# Upgrades are rolling (README, "Upgrading"): the previous release's apps and workers run on the
# new schema until they are replaced, so a migration only adds. Removing or tightening what the
# previous release reads or writes is a "contract" migration, shipped in a later release than
# the code that stopped using it, and says so in `contract_reason`. The migrations up to this one
# were written before the rule.
LAST_REVISION_BEFORE_THE_RULE = "9e4c7b2a5d18"

_BREAKING_SQL = re.compile(
    r"\b(DROP\s+(COLUMN|TABLE)|RENAME\s+(TO|COLUMN)|SET\s+NOT\s+NULL|DROP\s+DEFAULT)\b", re.I
)


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _breaking_operation(call: ast.Call) -> str | None:
    """What in one `op.…(…)` call would break the previous release's code, if anything."""
    if not (isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)):
        return None
    if call.func.value.id != "op":
        return None
    operation = call.func.attr
    if operation in {"drop_column", "drop_table", "rename_table"}:
        return operation
    if operation == "alter_column":
        if _keyword(call, "new_column_name") is not None:
            return "alter_column renaming a column"
        if _is_constant(_keyword(call, "nullable"), False):
            return "alter_column making a column NOT NULL"
        if _is_constant(_keyword(call, "server_default"), None):
            return "alter_column dropping a server default"
    if operation == "add_column":
        column = next((a for a in call.args if isinstance(a, ast.Call)), None)
        if (
            column is not None
            and _is_constant(_keyword(column, "nullable"), False)
            and _keyword(column, "server_default") is None
        ):
            return "add_column NOT NULL without a server default"
    if operation == "execute":
        for argument in ast.walk(call):
            if (
                isinstance(argument, ast.Constant)
                and isinstance(argument.value, str)
                and (match := _BREAKING_SQL.search(argument.value))
            ):
                return f"execute {match.group(0).upper()!r}"
    return None


def breaking_operations(source: str) -> list[str]:
    """The operations in a migration's `upgrade()` that the previous release would trip on;
    none when the module declares a `contract_reason`."""
    module = ast.parse(source)
    for statement in module.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        if any(isinstance(t, ast.Name) and t.id == "contract_reason" for t in targets):
            return []
    upgrade = next(
        node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
    )
    return [
        found
        for node in ast.walk(upgrade)
        if isinstance(node, ast.Call) and (found := _breaking_operation(node)) is not None
    ]


def _migrations_newest_first() -> list[Script]:
    return list(ScriptDirectory.from_config(alembic_config(Settings())).walk_revisions())


def _breaking_operations_of(script: Script) -> list[str]:
    assert script.path is not None
    return breaking_operations(Path(script.path).read_text(encoding="utf-8"))


def test_every_migration_since_the_rule_keeps_the_previous_release_working() -> None:
    revisions = [script.revision for script in _migrations_newest_first()]
    assert LAST_REVISION_BEFORE_THE_RULE in revisions
    newer = _migrations_newest_first()[: revisions.index(LAST_REVISION_BEFORE_THE_RULE)]
    breaking = {s.revision: found for s in newer if (found := _breaking_operations_of(s))}
    assert breaking == {}, (
        "these would break the previous release during a rolling upgrade; ship the removal "
        "later with a contract_reason (README, Upgrading)"
    )


def test_the_check_finds_the_breaking_migrations_written_before_the_rule() -> None:
    """Two older migrations tightened columns that the release before them wrote: a login or an
    e-mail from an old replica would have failed mid-upgrade."""
    found = {s.revision: _breaking_operations_of(s) for s in _migrations_newest_first()}
    assert found["a4d1f7c02e58"] == ["alter_column making a column NOT NULL"]
    assert found["3a9d6e2f4c17"] == ["alter_column dropping a server default"]


@pytest.mark.parametrize(
    ("upgrade_body", "found"),
    [
        ('op.drop_column("orders", "note")', ["drop_column"]),
        ('op.drop_table("carts")', ["drop_table"]),
        ('op.alter_column("users", "name", new_column_name="full_name")', None),
        ('op.alter_column("users", "name", nullable=False)', None),
        ('op.alter_column("users", "status", server_default=None)', None),
        ('op.add_column("users", sa.Column("plan", sa.Text(), nullable=False))', None),
        ('op.execute("ALTER TABLE users DROP COLUMN plan")', None),
        ('op.execute("ALTER TABLE users ALTER plan SET NOT NULL")', None),
        ('op.add_column("users", sa.Column("plan", sa.Text(), nullable=True))', []),
        (
            'op.add_column("users", sa.Column("plan", sa.Text(), nullable=False,'
            ' server_default="free"))',
            [],
        ),
        ('op.create_index("ix_users_plan", "users", ["plan"])', []),
        ('op.alter_column("users", "plan", nullable=True)', []),
    ],
)
def test_the_rolling_upgrade_check_finds_what_breaks(
    upgrade_body: str, found: list[str] | None
) -> None:
    source = f"def upgrade() -> None:\n    {upgrade_body}\n"
    operations = breaking_operations(source)
    if found is None:
        assert len(operations) == 1
    else:
        assert operations == found
    assert breaking_operations(f'contract_reason = "unused since 1.4"\n{source}') == []
