"""A real PgBouncer (Debian's package) in transaction-pooling mode in front of a test database,
as a child process on a free loopback port."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from computebill.devserver.embedded import free_port
from tests.support.processes import stop, wait_listening

PGBOUNCER = Path("/usr/sbin/pgbouncer")


@dataclass(frozen=True)
class PgBouncer:
    url: str  # the database, through PgBouncer
    log: Path


def _ini(database_url: str, port: int, auth_file: Path) -> str:
    url = make_url(database_url)
    server = f"host={url.host or '127.0.0.1'} port={url.port or 5432} dbname={url.database}"
    if url.username:
        server += f" user={url.username}"
    if url.password:
        server += f" password={url.password}"
    # server_round_robin: each transaction may get a different server connection, as on a busy
    # pooler, so a statement that outlives its transaction fails here rather than in production.
    return f"""\
[databases]
{url.database} = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
server_round_robin = 1
"""


@contextmanager
def pgbouncer(database_url: str, directory: Path) -> Iterator[PgBouncer]:
    """PgBouncer pooling `database_url`'s database in transaction mode, its files in
    `directory`."""
    port = free_port()
    url = make_url(database_url)
    auth_file = directory / "userlist.txt"
    auth_file.write_text(f'"{url.username or "postgres"}" ""\n')
    ini = directory / "pgbouncer.ini"
    ini.write_text(_ini(database_url, port, auth_file))
    log = directory / "pgbouncer.log"
    argv = [str(PGBOUNCER), str(ini)]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: as postgres, it reads its files
        argv[1:1] = ["-u", "postgres"]
        directory.chmod(0o755)
    with log.open("ab") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, process, log)
        through = url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        yield PgBouncer(url=through, log=log)
    finally:
        stop(process)
