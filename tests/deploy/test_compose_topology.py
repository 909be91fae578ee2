"""The container image and compose.yaml, run with podman on this machine: the image as operators
get it (non-root, a health check, under 300 MB, working on a read-only root filesystem), and one
instance bought end to end through the topology: sign-up through the proxy, the e-mailed link,
cart, checkout on the Stripe emulator, its webhook through the proxy to an app, a worker
provisioning the instance; then a replica stopped while the proxy keeps answering.

Podman specifics live here, never in compose.yaml or the Dockerfile: the base images are made
from Debian packages (deploy/build-base-images.sh), and compose.podman.yaml lays host
networking and a Debian image of PostgreSQL 17, Valkey, PgBouncer and nginx over compose.yaml.
`pytest -m deploy` runs these tests (root, podman, runc, mmdebstrap).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from computebill.config import Settings, load_settings
from computebill.devserver.embedded import free_port
from tests.support.http import AppClient
from tests.support.shopper import Shopper, pay

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IMAGE = "localhost/computebill:latest"
BASE_IMAGES = {
    "PYTHON_IMAGE": "localhost/computebill-python:trixie",
    "NODE_IMAGE": "localhost/computebill-node:trixie",
}
PROJECT = "computebill-deploy-test"
COMPOSE_LABEL = "com.docker.compose"  # podman-compose labels its containers as Docker's does
PODMAN_COMPOSE = Path(sys.executable).with_name("podman-compose")  # the dev extra's
PORTS = (
    "POSTGRES_PORT",
    "VALKEY_PORT",
    "PGBOUNCER_PORT",
    "APP_1_PORT",
    "APP_2_PORT",
    "WORKER_1_PORT",
    "WORKER_2_PORT",
    "PROXY_PORT",
    "EMULATOR_PORT",
)
PLATFORM = ("app-1", "app-2", "worker-1", "worker-2", "stripe-emulator", "proxy")


def podman_environment() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf")}


def run(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or podman_environment(),
        cwd=cwd,
        check=False,
    )
    assert not check or done.returncode == 0, (
        f"{' '.join(map(str, argv))} exited {done.returncode}\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}


@pytest.fixture(scope="module")
def image() -> str:
    """The image built from the Dockerfile on the local base images (made when missing)."""
    run([ROOT / "deploy" / "build-base-images.sh"], timeout=1200)
    build_args = [f"--build-arg={name}={base}" for name, base in BASE_IMAGES.items()]
    # Docker's format keeps the HEALTHCHECK (OCI's has none).
    run(
        [
            "podman",
            "build",
            "--format",
            "docker",
            "--network",
            "host",
            *build_args,
            "--tag",
            IMAGE,
            ROOT,
        ],
        timeout=1200,
    )
    return IMAGE


def test_the_image_runs_as_a_user_with_a_health_check_on_a_read_only_root(image: str) -> None:
    inspected = run(
        ["podman", "image", "inspect", "--format", "{{.Size}} {{.Config.User}}", image],
        timeout=60,
    ).stdout.split()
    assert inspected[1] == "computebill"
    assert int(inspected[0]) < 300 * 1000 * 1000, f"{int(inspected[0]):,} bytes"
    health = run(
        ["podman", "image", "inspect", "--format", "{{.Config.Healthcheck.Test}}", image],
        timeout=60,
    ).stdout
    assert "/healthz" in health
    # The entry point is `computebill`; nothing to compile with.
    usage = run(
        ["podman", "run", "--rm", "--read-only", "--network", "none", image, "--help"], timeout=120
    ).stdout
    assert "migrate" in usage
    assert "worker" in usage
    probe = "import shutil, sys; sys.exit(any(map(shutil.which, ('gcc', 'cc', 'make'))))"
    run(
        [
            "podman",
            "run",
            "--rm",
            "--read-only",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            image,
            "-c",
            probe,
        ],
        timeout=120,
    )


@dataclass
class Topology:
    """compose.yaml with the podman override, in a directory of its own, on the given ports."""

    directory: Path
    ports: dict[str, int]
    log: Path

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        files = ["-f", "compose.yaml", "-f", "compose.podman.yaml"]
        command = [
            shutil.which("podman-compose") or Path(sys.executable).with_name("podman-compose")
        ]
        return run(
            [*command, "--profile", "dev", "--project-name", PROJECT, *files, *args],
            timeout=timeout,
            cwd=self.directory,
        )

    def containers(self, *labels: str) -> list[str]:
        """The names of the project's containers that have these labels too."""
        filters = [
            f"--filter=label={label}" for label in (f"{COMPOSE_LABEL}.project={PROJECT}", *labels)
        ]
        listed = run(["podman", "ps", "--all", "--format={{.Names}}", *filters], timeout=60)
        return listed.stdout.split()

    def container(self, service: str) -> str:
        names = self.containers(f"{COMPOSE_LABEL}.service={service}")
        assert len(names) == 1, f"{service}: {names}"
        return names[0]

    def start(self, *services: str, healthy: bool = True) -> None:
        """Starts the services' containers; then, unless not `healthy`, waits until each passes
        its health check."""
        run(["podman", "start", *map(self.container, services)], timeout=120)
        for service in services if healthy else ():
            self.wait_healthy(service)

    def wait_healthy(self, service: str, within: float = 120) -> None:
        """Runs the service's own health check until it passes (podman 4.3 runs none by itself
        without systemd)."""
        container = self.container(service)
        deadline = time.monotonic() + within
        while True:
            check = ["podman", "healthcheck", "run", container]
            if run(check, timeout=60, check=False).returncode == 0:
                return
            assert time.monotonic() < deadline, f"{service} not healthy in {within} s"
            time.sleep(1)

    def save_logs(self) -> None:
        """Every container's output, into `log`, for a failure to be read."""
        with self.log.open("w") as log:
            for name in self.containers():
                logs = run(["podman", "logs", name], timeout=60, check=False)
                log.write(f"==> {name}\n{logs.stdout}{logs.stderr}\n")

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['PROXY_PORT']}"


def rendered_override(ports: dict[str, int]) -> str:
    """compose.podman.yaml with the ports in place of their names (podman-compose leaves the
    variables in an `!override` as they are)."""
    override = (HERE / "compose.podman.yaml").read_text()
    for name, port in ports.items():
        override = override.replace(f"${{{name}}}", str(port))
    assert "${" not in override
    return override


def rendered_nginx_conf(ports: dict[str, int]) -> str:
    """deploy/nginx/nginx.conf with host networking's addresses for the replicas' names."""
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    for old, new in (
        ("server app-1:8000", f"server 127.0.0.1:{ports['APP_1_PORT']}"),
        ("server app-2:8000", f"server 127.0.0.1:{ports['APP_2_PORT']}"),
        ("listen 8080;", f"listen 127.0.0.1:{ports['PROXY_PORT']};"),
    ):
        assert conf.count(old) == 1, old
        conf = conf.replace(old, new)
    return conf


@pytest.fixture(scope="module")
def topology(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The whole topology up. compose.yaml's conditions are enacted here: with podman 4.3,
    podman-compose cannot wait for a health check (it starts a service's dependencies and goes
    on), so the test creates the containers, then starts them in their order and runs each
    health check."""
    directory = tmp_path_factory.mktemp("compose")
    (directory / "deploy" / "nginx").mkdir(parents=True)
    shutil.copy(ROOT / "compose.yaml", directory)
    shutil.copy(ROOT / "deploy" / "compose.env.example", directory / "deploy" / "compose.env")
    ports: dict[str, int] = {}
    for name in PORTS:
        ports[name] = next(p for p in iter(free_port, None) if p not in ports.values())
    (directory / "deploy" / "nginx" / "nginx.conf").write_text(rendered_nginx_conf(ports))
    (directory / "compose.podman.yaml").write_text(rendered_override(ports))
    topology = Topology(directory, ports, directory / "containers.log")
    topology.compose("down", "--volumes", timeout=300)  # what a run that was killed left
    try:
        # Without podman's --requires links, which podman 4.3 cannot follow when it starts a
        # container whose dependency has dependencies of its own.
        topology.compose("up", "--no-start", "--no-build", "--no-deps")
        topology.start("postgres", "valkey")
        topology.start("pgbouncer")
        topology.start("migrate", healthy=False)
        migrated = run(["podman", "wait", topology.container("migrate")], timeout=300)
        assert migrated.stdout.strip() == "0"
        topology.start(*PLATFORM)
        yield topology
    finally:
        try:
            topology.save_logs()
        finally:
            topology.compose("down", "--volumes", timeout=300)


def platform_settings(topology: Topology) -> Settings:
    """Settings that reach the topology's PostgreSQL, to read the e-mails its app sent."""
    secrets = env_file(topology.directory / "deploy" / "compose.env")
    port = topology.ports["POSTGRES_PORT"]
    return load_settings(
        database_url=f"postgresql://computebill:{secrets['PGPASSWORD']}@127.0.0.1:{port}/computebill",
        token_pepper=secrets["TOKEN_PEPPER"],
    )


async def until_ready(http: AppClient, within: float) -> None:
    """The apps answer `/readyz` once a worker has written its first heartbeat, which may come
    a little after the workers' containers are healthy (their metrics port is up first)."""
    deadline = time.monotonic() + within
    while (answer := await http.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, f"not ready in {within} s: {answer.text}"
        await asyncio.sleep(0.5)


async def test_one_instance_is_bought_end_to_end_through_the_topology(
    topology: Topology,
) -> None:
    settings = platform_settings(topology)
    async with AppClient(settings, base_url=topology.proxy_url, timeout=30) as http:
        await until_ready(http, within=60)
        shopper = await Shopper(http).sign_up()
        await shopper.add(quantity=1)
        order_id, checkout_url = await shopper.checkout_url()
        assert checkout_url.startswith(f"http://127.0.0.1:{topology.ports['EMULATOR_PORT']}/")
        assert (await pay(checkout_url)).status_code == 303

        order = await shopper.wait_for(order_id, "paid", within=90)
        assert [h["to_status"] for h in order["history"]] == ["pending", "paid"]
        order = await shopper.wait_until(
            order_id,
            lambda o: bool(o["instances"]) and o["instances"][0]["status"] == "running",
            within=120,
        )
        assert [i["status"] for i in order["instances"]] == ["running"]

    # Stripe's webhook came through the proxy.
    proxy_log = run(["podman", "logs", topology.container("proxy")], timeout=60)
    assert '"POST /webhooks/stripe HTTP/1.1" 200' in proxy_log.stdout + proxy_log.stderr


def test_the_proxy_skips_a_stopped_replica(topology: Topology) -> None:
    run(["podman", "stop", "--time", "20", topology.container("app-1")], timeout=120)
    try:
        with httpx.Client(base_url=topology.proxy_url, timeout=10) as http:
            answers = [http.get("/healthz").status_code for _ in range(10)]
        assert answers == [200] * 10
    finally:
        run(["podman", "start", topology.container("app-1")], timeout=120)
