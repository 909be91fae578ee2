"""The platform as it runs for real, for the fuzz tests: `computebill app` (uvicorn) as a process
on 127.0.0.1 with a `computebill worker` beside it (so /readyz is ready), talking to the Stripe
emulator, on a database and Redis namespace of their own."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from pydantic import AnyHttpUrl, SecretStr

from computebill.app import create_app
from computebill.config import LogFormat, Settings, load_settings
from computebill.devserver.embedded import free_port
from tests.support.admins import grant_admin_role, turn_on_two_factor
from tests.support.mailbox import VERIFY_EMAIL, emailed_token
from tests.support.settings import settings_environment
from tests.support.stripe import EmulatorProcess

WEBHOOK_SECRET = "whsec_fuzz_tests"
PASSWORD = "correct horse battery"
PROBLEM = "application/problem+json"


# Known-good values for the configuration fields (the seeded catalog and its options).
CONFIGURATION_EXAMPLES: dict[str, list[Any]] = {
    "gpu": ["nvidia-h100", "amd-mi300x"],
    "gpu_count": [1, 2],
    "vcpus": [12, 24],
    "storage_gb": [500],
    "hours": [1, 10],
    "region": ["us-east-1", None],
}


@cache
def openapi_spec() -> dict[str, Any]:
    """The app's OpenAPI document (building the app connects to nothing)."""
    placeholder = load_settings(
        database_url="postgresql://placeholder/none",
        redis_url="redis://placeholder",
        jwt_secret="placeholder-jwt-secret-0123456789abcdef",
        token_pepper="placeholder-token-pepper-0123456789abcdef",
    )
    spec: dict[str, Any] = create_app(placeholder).openapi()
    return spec


@dataclass(frozen=True)
class Server:
    base_url: str
    settings: Settings  # what the server runs with
    log: Path

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


@dataclass(frozen=True)
class User:
    email: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


def serve_platform(settings: Settings, base: Path) -> Iterator[Server]:
    emulator = EmulatorProcess(base / "emulator", "--webhook-secret", WEBHOOK_SECRET).start()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app_settings = settings.model_copy(
        update={
            "stripe_secret_key": SecretStr("sk_test_fuzz"),
            "stripe_api_base": AnyHttpUrl(emulator.base_url),
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "public_base_url": AnyHttpUrl(base_url),
            "log_format": LogFormat.JSON,
        }
    )
    log = base / "platform.log"
    env = settings_environment(app_settings)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with log.open("ab") as output:
            for command in (["app", "--port", str(port)], ["worker"]):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "computebill", *command],
                        env=env,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )
                )
        _wait_until_ready(base_url, processes[0], log)
        yield Server(base_url=base_url, settings=app_settings, log=log)
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        emulator.stop()


def _wait_until_ready(base_url: str, app: subprocess.Popen[bytes], log: Path) -> None:
    """Until /readyz answers 200: the database, Redis and a worker's heartbeat are all there."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert app.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base_url} did not become ready:\n{log.read_text()[-3000:]}")


def sign_up(server: Server, prefix: str = "fuzz") -> User:
    """A new account, its address verified through the e-mailed link."""
    email = f"{prefix}-{secrets.token_hex(5)}@example.com"
    answer = httpx.post(
        f"{server.base_url}/api/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "name": "Fuzz"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    token = asyncio.run(emailed_token(server.settings, email, VERIFY_EMAIL))
    verified = httpx.post(
        f"{server.base_url}/api/v1/auth/verify-email", json={"token": token}, timeout=30
    )
    assert verified.status_code == 204, verified.text
    return User(email=email, token=answer.json()["access_token"])


def _turn_on_two_factor(server: Server, user: User) -> None:
    """Two-factor authentication through the API, which admin routes want of an admin."""

    async def turn_on() -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            await turn_on_two_factor(http, user.token)

    asyncio.run(turn_on())


def create_api_key(server: Server, account: User) -> User:
    """The account, calling with a new API key holding every scope instead of its session."""
    answer = httpx.post(
        f"{server.base_url}/api/v1/api-keys",
        json={"name": "fuzz", "scopes": ["read", "instances:write", "billing:write"]},
        headers=account.auth,
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return User(email=account.email, token=answer.json()["key"])


def grant_admin(server: Server, user: User) -> None:
    """The only way to an admin: `computebill admin grant EMAIL` on the command line; then
    two-factor authentication."""
    email = user.email
    done = subprocess.run(
        [sys.executable, "-m", "computebill", "admin", "grant", email],
        env=settings_environment(server.settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _turn_on_two_factor(server, user)


def make_admin(server: Server, user: User) -> None:
    """What `computebill admin grant` does, in this process (faster, for many accounts), then
    two-factor authentication."""
    asyncio.run(grant_admin_role(server.settings, user.email))
    _turn_on_two_factor(server, user)
