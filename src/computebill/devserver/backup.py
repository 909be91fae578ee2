"""`computebill backup`, `restore` and `reset`: the configured database (`DATABASE_URL`), or
without one the embedded PostgreSQL of `computebill up`'s data directory.

Backups are PostgreSQL's own: `pg_dump --format=custom`, read back by `pg_restore`. For the
embedded server the tools are the wheel's, of the server's version; otherwise those of the
server's major version (Debian's and PGDG's directories, then `PATH`), or newer ones, since
`pg_dump` reads older servers; older tools are refused. A restore drops the database and
creates it empty again before `pg_restore` fills it in one transaction, so nothing of what was
there before survives beside the backup. The password reaches the tools in their environment
(`PGPASSWORD`), never on a command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import make_url

from computebill.config import Settings
from computebill.devserver.embedded import EmbeddedPostgres, EmbeddedValkey, free_port
from computebill.devserver.scratch import delete_namespace, postgres_dsn
from computebill.devserver.supervisor import STATE_FILE, DataDirLock, UpError
from computebill.migrations import alembic_config, upgrade_to_head
from computebill.seed import seed

TOOL_TIMEOUT_SECONDS = 3600.0
# Where distributions keep each major version's client tools, besides PATH.
VERSIONED_TOOL_DIRS = ("/usr/lib/postgresql/{major}/bin", "/usr/pgsql-{major}/bin")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class OperationError(RuntimeError):
    """The command cannot go on; the message says why, `status` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """The database (and Redis) a command acts on, and the embedded tools' directory if any."""

    database_url: str
    redis_url: str | None
    embedded_tools: Path | None


def _recorded_urls(data_dir: Path) -> dict[str, str]:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
        return {name: str(entry["url"]) for name, entry in state.items() if "url" in entry}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


@contextmanager
def target(settings: Settings, data_dir: Path, *, with_redis: bool = False) -> Iterator[Target]:
    """The configured services; without `DATABASE_URL`, the embedded ones of `data_dir`: those
    of the `up` running there, or started here for the command (holding the directory's lock, so
    no `up` starts meanwhile)."""
    if settings.database_url is not None:
        yield Target(settings.database_url, settings.redis_url, None)
        return
    data_dir = data_dir.resolve()
    if not (data_dir / "postgres" / "PG_VERSION").exists():
        raise OperationError(
            f"DATABASE_URL is not set and {data_dir} holds no embedded database "
            "(run `computebill up` once, or pass --data-dir)",
            2,
        )
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except UpError:
        urls = _recorded_urls(data_dir)
        if "postgres" not in urls:
            raise OperationError(f"the `up` running in {data_dir} has not started yet") from None
        postgres = EmbeddedPostgres(data_dir / "postgres", 0)
        yield Target(urls["postgres"], settings.redis_url or urls.get("valkey"), postgres.bin)
        return
    servers: list[EmbeddedPostgres | EmbeddedValkey] = []
    try:
        postgres = EmbeddedPostgres(data_dir / "postgres", free_port())
        servers.append(postgres)
        postgres.start()
        redis_url = settings.redis_url
        if with_redis and redis_url is None and (data_dir / "valkey").exists():
            valkey = EmbeddedValkey(data_dir / "valkey", free_port())
            servers.append(valkey)
            valkey.start()
            redis_url = valkey.url
        yield Target(postgres.url, redis_url, postgres.bin)
    finally:
        for server in reversed(servers):
            server.stop()
        lock.release()


# --- The tools ---------------------------------------------------------------------------------


def tool_environment(database_url: str) -> dict[str, str]:
    """Ours, with libpq's variables for the database: the password among them, never in an
    argument. The TLS mode is the URL's `sslmode` (libpq's name) or `ssl` (asyncpg's)."""
    url = make_url(database_url)
    ssl_mode = str(url.query.get("sslmode") or url.query.get("ssl") or "")
    variables = {
        "PGHOST": url.host,
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGPASSWORD": url.password if isinstance(url.password, str) else None,
        "PGDATABASE": url.database,
        "PGSSLMODE": ssl_mode if ssl_mode in SSL_MODES else None,
    }
    return dict(os.environ) | {name: value for name, value in variables.items() if value}


def _major_version(tool: Path) -> int | None:
    """The major version `tool --version` reports (`pg_dump (PostgreSQL) 18.1`), if it runs."""
    try:
        answer = subprocess.run(
            [str(tool), "--version"], capture_output=True, text=True, check=False, timeout=30
        )
    except OSError:
        return None
    found = re.search(r"\(PostgreSQL\) (\d+)", answer.stdout)
    return int(found.group(1)) if found else None


def client_tools(server_major: int, embedded: Path | None) -> Path:
    """The directory of a `pg_dump` and `pg_restore` able to serve a server of `server_major`."""
    if embedded is not None:
        candidates = [embedded]
    else:
        candidates = [Path(pattern.format(major=server_major)) for pattern in VERSIONED_TOOL_DIRS]
        on_path = shutil.which("pg_dump")
        if on_path is not None:
            candidates.append(Path(on_path).parent)
    found: list[tuple[Path, int]] = []
    for directory in candidates:
        if not (directory / "pg_restore").exists():
            continue
        major = _major_version(directory / "pg_dump")
        if major is not None:
            found.append((directory, major))
    for directory, major in found:
        if major == server_major:
            return directory
    for directory, major in found:
        if major > server_major:
            return directory
    if not found:
        raise OperationError(
            f"no pg_dump and pg_restore found (PostgreSQL {server_major}'s client tools are "
            "needed: install them, or put them on PATH)",
            2,
        )
    older = ", ".join(f"{directory} ({major})" for directory, major in found)
    raise OperationError(
        f"the server is PostgreSQL {server_major}, and the client tools found are older: "
        f"{older}; install PostgreSQL {server_major}'s client tools",
        2,
    )


def _run_tool(tools: Path, tool: str, database_url: str, *args: str) -> str:
    try:
        answer = subprocess.run(
            [str(tools / tool), "--no-password", *args],
            env=tool_environment(database_url),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=TOOL_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise OperationError(f"{tool} could not run: {error}") from error
    if answer.returncode != 0:
        raise OperationError(f"{tool} failed: {answer.stderr.strip()}")
    return answer.stdout


# --- The server --------------------------------------------------------------------------------


async def _connect(database_url: str, database: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(postgres_dsn(database_url, database))
    except (OSError, asyncpg.PostgresError) as error:
        raise OperationError(f"cannot connect to the database server: {error}") from error


async def _server_major(database_url: str) -> int:
    connection = await _connect(database_url, "postgres")
    try:
        return int(await connection.fetchval("SHOW server_version_num")) // 10000
    finally:
        await connection.close()


async def _revision(database_url: str) -> str | None:
    connection = await _connect(database_url, str(make_url(database_url).database))
    try:
        return await connection.fetchval(  # type: ignore[no-any-return]
            "SELECT version_num FROM alembic_version"
        )
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await connection.close()


async def _recreate_database(database_url: str) -> None:
    """Drop the database (ending its sessions) and create it again, empty."""
    name = str(make_url(database_url).database)
    quoted = '"' + name.replace('"', '""') + '"'
    connection = await _connect(database_url, "postgres")
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {quoted} TEMPLATE template0 ENCODING 'UTF8'")
    except asyncpg.PostgresError as error:
        raise OperationError(f"cannot drop and create the database {name}: {error}") from error
    finally:
        await connection.close()


def _describe(database_url: str) -> str:
    url = make_url(database_url)
    return f"{url.database} on {url.host or 'the local socket'}:{url.port or 5432}"


# --- The commands ------------------------------------------------------------------------------


def confirm(question: str, *, yes: bool) -> None:
    """Go on with `--yes`, or when the person at the terminal answers yes; else stop."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise OperationError(f"{question} Not asked: stdin is not a terminal; pass --yes", 2)
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise OperationError("nothing done", 1)


def backup(settings: Settings, data_dir: Path, destination: Path) -> str:
    """Write the database to `destination` (the whole file or nothing); say what was written."""
    with target(settings, data_dir) as found:
        server_major = asyncio.run(_server_major(found.database_url))
        tools = client_tools(server_major, found.embedded_tools)
        revision = asyncio.run(_revision(found.database_url))
        partial = destination.with_name(destination.name + ".partial")
        try:
            _run_tool(tools, "pg_dump", found.database_url, "--format=custom", f"--file={partial}")
            partial.replace(destination)
        finally:
            partial.unlink(missing_ok=True)
        return (
            f"{_describe(found.database_url)} (revision {revision or 'none'}) backed up to "
            f"{destination} ({destination.stat().st_size} bytes, pg_dump {tools})"
        )


def _revision_note(settings: Settings, revision: str | None) -> str:
    """What the restored schema's revision means for this version of the code."""
    scripts = ScriptDirectory.from_config(alembic_config(settings))
    head = scripts.get_current_head()
    if revision == head:
        return f"at revision {revision}, the latest this version knows"
    try:
        known = revision is not None and scripts.get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise OperationError(
            f"restored, but at revision {revision or 'none'}, which this version of computebill "
            f"does not know (its latest is {head}): restore it with the version that made it"
        )
    return f"at revision {revision}, older than this version's {head}: run `computebill migrate`"


def restore(settings: Settings, data_dir: Path, source: Path, *, yes: bool) -> str:
    """Replace the database with the backup in `source`; say at which revision it now is."""
    if not source.is_file():
        raise OperationError(f"no backup file {source}", 2)
    with target(settings, data_dir) as found:
        server_major = asyncio.run(_server_major(found.database_url))
        tools = client_tools(server_major, found.embedded_tools)
        # Read the archive before dropping anything: a file that is not one stops here.
        try:
            _run_tool(tools, "pg_restore", found.database_url, "--list", str(source))
        except OperationError as error:
            raise OperationError(
                f"{source} is not a backup pg_restore can read: {error}", 2
            ) from error
        confirm(
            f"Replace {_describe(found.database_url)} and everything in it by {source}?", yes=yes
        )
        asyncio.run(_recreate_database(found.database_url))
        database = str(make_url(found.database_url).database)
        _run_tool(
            tools,
            "pg_restore",
            found.database_url,
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            f"--dbname={database}",
            str(source),
        )
        note = _revision_note(settings, asyncio.run(_revision(found.database_url)))
        return f"{_describe(found.database_url)} restored from {source}, {note}"


def reset(settings: Settings, data_dir: Path, *, yes: bool) -> str:
    """Drop and create the database, migrate and seed it, and empty the Redis namespace."""
    with target(settings, data_dir, with_redis=True) as found:
        confirm(
            f"Drop {_describe(found.database_url)} and everything in it, and empty the "
            f"queue of the namespace {settings.redis_namespace}?",
            yes=yes,
        )
        asyncio.run(_recreate_database(found.database_url))
        fresh = settings.model_copy(update={"database_url": found.database_url})
        upgrade_to_head(fresh)
        seed(fresh)
        if found.redis_url is None:
            return f"{_describe(found.database_url)} reset (no Redis configured: queue untouched)"
        asyncio.run(delete_namespace(found.redis_url, settings.redis_namespace))
        return (
            f"{_describe(found.database_url)} reset: migrated and seeded; the namespace "
            f"{settings.redis_namespace} emptied"
        )
