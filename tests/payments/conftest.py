"""The platform as it runs for real: the app and a worker as processes, Stripe as the emulator
(delivering signed webhooks to the app over HTTP), PostgreSQL and Redis as in every test."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from computebill.config import Settings
from computebill.embedded import free_port
from tests.stripe_emulator.support import EmulatorProcess
from tests.support import settings_environment

WEBHOOK_SECRET = "whsec_platform_tests_primary"
OTHER_WEBHOOK_SECRET = "whsec_platform_tests_rotated"
STRIPE_KEY = "sk_test_platform_tests"


@dataclass
class Platform:
    base_url: str
    emulator: EmulatorProcess
    settings: Settings
    log: Path


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        with log.open("ab") as output:
            self.popen = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()


def wait_healthy(url: str, log: Path, process: Process) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.popen.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def platform(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    base = tmp_path_factory.mktemp("platform")
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    emulator = EmulatorProcess(
        base / "emulator",
        "--forward-to",
        f"{app_url}/webhooks/stripe",
        "--webhook-secret",
        WEBHOOK_SECRET,
        "--retry-base",
        "0.5",
        "--async-settle-delay",
        "1",
    ).start()
    env = settings_environment(
        settings,
        STRIPE_SECRET_KEY=STRIPE_KEY,
        STRIPE_API_BASE=emulator.base_url,
        STRIPE_WEBHOOK_SECRET=f"{WEBHOOK_SECRET},{OTHER_WEBHOOK_SECRET}",
        PUBLIC_BASE_URL=app_url,
        EVENT_SWEEP_SECONDS="1",
        EVENT_SWEEP_AFTER_SECONDS="2",
        LOG_FORMAT="json",
    )
    log = base / "platform.log"
    app = Process([sys.executable, "-m", "computebill", "app", "--port", str(port)], env, log)
    worker = Process([sys.executable, "-m", "computebill", "worker"], env, log)
    try:
        wait_healthy(f"{app_url}/healthz", log, app)
        yield Platform(base_url=app_url, emulator=emulator, settings=settings, log=log)
    finally:
        for process in (worker, app):
            process.stop()
        emulator.stop()


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
        yield client
