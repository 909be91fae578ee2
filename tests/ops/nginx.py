"""A real nginx (Debian's package) as a load balancer in front of app processes, as a child
process on a free loopback port, logging which upstream answered each request."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from computebill.devserver.embedded import free_port
from tests.support.processes import stop, wait_listening

NGINX = Path("/usr/sbin/nginx")
# One line per request: when it ended (Unix time), its status to the client, every upstream
# tried in order ("127.0.0.1:p1, 127.0.0.1:p2") and each one's status ("502, 200").
_LOG_FORMAT = "$msec|$status|$upstream_addr|$upstream_status"


@dataclass(frozen=True)
class Proxied:
    """One request as nginx logged it."""

    ended_at: float
    status: int
    upstreams: tuple[str, ...]
    upstream_statuses: tuple[str, ...]


@dataclass(frozen=True)
class Nginx:
    base_url: str
    access_log: Path
    error_log: Path

    def requests(self) -> list[Proxied]:
        logged: list[Proxied] = []
        for line in self.access_log.read_text().splitlines():
            ended_at, status, upstreams, statuses = line.split("|")
            logged.append(
                Proxied(
                    ended_at=float(ended_at),
                    status=int(status),
                    upstreams=tuple(u.strip() for u in upstreams.split(",")),
                    upstream_statuses=tuple(s.strip() for s in statuses.split(",")),
                )
            )
        return logged


def _config(port: int, upstreams: Sequence[str], directory: Path) -> str:
    servers = "\n".join(f"        server {upstream};" for upstream in upstreams)
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # The proxying is deploy/nginx/nginx.conf's: keep-alive connections to the apps, and a
    # request an app refuses, drops or answers 502/503 passed to the next one.
    return f"""\
daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;
events {{
    worker_connections 256;
}}
http {{
    log_format upstreams '{_LOG_FORMAT}';
    access_log {directory / "access.log"} upstreams;
{temp}
    upstream apps {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://apps;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


@contextmanager
def nginx(upstreams: Sequence[str], directory: Path) -> Iterator[Nginx]:
    """nginx balancing requests over `upstreams` (`host:port`), its files in `directory`."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "nginx.conf"
    config.write_text(_config(port, upstreams, directory))
    output_log = directory / "nginx.out"
    with output_log.open("ab") as output:
        process = subprocess.Popen(
            [str(NGINX), "-c", str(config), "-p", str(directory)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, process, output_log)
        yield Nginx(
            base_url=f"http://127.0.0.1:{port}",
            access_log=directory / "access.log",
            error_log=directory / "error.log",
        )
    finally:
        stop(process)
