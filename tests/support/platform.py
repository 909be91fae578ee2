"""The platform as it runs for real: the app and a worker as processes, Stripe as the emulator
(delivering signed webhooks to the app over HTTP), PostgreSQL and Redis as in every test."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import AnyHttpUrl

from computebill.config import LogFormat, Settings
from computebill.devserver.embedded import free_port
from tests.support.admins import TwoFactor, turn_on_two_factor
from tests.support.settings import settings_environment
from tests.support.stripe import EmulatorProcess, forwarding_emulator, with_stripe


@dataclass
class Platform:
    base_url: str
    emulator: EmulatorProcess
    settings: Settings  # the test session's: database, Redis, keys
    app_settings: Settings  # what the app and the worker run with: those plus Stripe and sweeps
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


def wait_healthy(url: str, log: Path, process: Process, *, within: float = 90) -> None:
    """Until `url` answers 200 (a loaded 2-core machine takes 20 s+ to import the app); fails
    with the log's tail when the process exits or `within` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.popen.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer:\n{log.read_text()[-3000:]}")


@contextmanager
def running_platform(
    settings: Settings, base: Path, *emulator_options: str, **app_changes: object
) -> Iterator[Platform]:
    """An emulator (with extra `emulator_options`) forwarding to an app process, and a worker,
    all configured from `settings` (with `app_changes` to the app's and the worker's settings)."""
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    emulator = forwarding_emulator(base / "emulator", [app_url], *emulator_options)
    processes: list[Process] = []
    changes: dict[str, Any] = {
        "simulated_boot_min_seconds": 0.2,
        "simulated_boot_max_seconds": 0.5,
        "log_format": LogFormat.JSON,
    } | app_changes
    try:
        app_settings = with_stripe(
            settings,
            api_base=emulator.base_url,
            public_base_url=AnyHttpUrl(app_url),
            event_sweep_seconds=1,
            event_sweep_after_seconds=2,
            **changes,
        )
        env = settings_environment(app_settings)
        log = base / "platform.log"
        app = Process([sys.executable, "-m", "computebill", "app", "--port", str(port)], env, log)
        processes.append(app)
        processes.append(Process([sys.executable, "-m", "computebill", "worker"], env, log))
        wait_healthy(f"{app_url}/healthz", log, app)
        yield Platform(
            base_url=app_url,
            emulator=emulator,
            settings=settings,
            app_settings=app_settings,
            log=log,
        )
    finally:
        for process in reversed(processes):
            process.stop()
        emulator.stop()


async def grant_admin(
    settings: Settings, email: str, *, http: httpx.AsyncClient, access_token: str
) -> TwoFactor:
    """The only way to an admin: `computebill admin grant EMAIL` on the command line; then
    two-factor authentication, which admin routes want, turned on through the API with the
    session of `access_token`."""
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "computebill",
        "admin",
        "grant",
        email,
        env=settings_environment(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await command.communicate()
    assert command.returncode == 0, output.decode()
    return await turn_on_two_factor(http, access_token)


async def wait_for_log(
    platform: Platform, event: str, within: float = 10, **fields: object
) -> dict[str, Any]:
    """The first JSON line the platform's processes logged for `event` with these fields."""
    deadline = time.monotonic() + within
    while True:
        for line in platform.log.read_text().splitlines():
            try:
                entry: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:  # not ours, or still being written
                continue
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                return entry
        assert time.monotonic() < deadline, f"no {event} {fields} in {platform.log}"
        await asyncio.sleep(0.2)
