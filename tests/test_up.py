"""`computebill up` from an empty data directory: ready, supervised, stopped, restartable, and
catching the e-mail it sends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from computebill.config import MailBackend, load_settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.devserver.embedded import free_port
from computebill.mail.service import send_email
from computebill.queue.publisher import AppQueuePublisher

pytestmark = pytest.mark.slow

READY_TIMEOUT = 150.0


def embedded_environment() -> dict[str, str]:
    """Our environment without service URLs, so `up` starts its own servers."""
    unset = {
        "DATABASE_URL",
        "REDIS_URL",
        "PUBLIC_BASE_URL",
        "JWT_SECRET",
        "TOKEN_PEPPER",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_API_BASE",
        "MAIL_BACKEND",
        "SMTP_URL",
        "DEV_MAIL_DIR",
    }
    return {key: value for key, value in os.environ.items() if key not in unset} | {
        "LOG_FORMAT": "json",
        "WORKER_HEARTBEAT_SECONDS": "1",
    }


def start_up(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "computebill",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
            ],
            env=embedded_environment(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    except httpx.HTTPError:
        return 0, {}
    return answer.status_code, answer.json()


def wait_for(condition: Any, timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; log:\n{log.read_text()[-4000:]}")


def state(data_dir: Path) -> dict[str, dict[str, Any]]:
    return dict(json.loads((data_dir / "up.json").read_text()))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_up(process: subprocess.Popen[bytes], pids: list[int], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log.read_text()[-4000:]
    wait_for(lambda: not any(alive(pid) for pid in pids), 10, "every child to exit", log)


async def send_through_up(services: dict[str, dict[str, Any]], subject: str) -> None:
    """An e-mail sent as the platform sends one: recorded in up's database, its delivery job
    published to up's queue, for up's worker to hand to up's catcher."""
    settings = load_settings(
        database_url=services["postgres"]["url"],
        redis_url=services["valkey"]["url"],
        mail_backend="smtp",
        smtp_url=services["mailcatcher"]["url"],
    )
    engine = create_engine(settings)
    publisher = AppQueuePublisher(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine), publisher) as db:
            await send_email(
                db,
                backend=MailBackend.SMTP,
                dedupe_key=f"test_up:{subject}",
                recipient="demo@computebill.dev",
                subject=subject,
                body="Your instances are ready: http://127.0.0.1/dashboard",
                now=datetime.now(UTC),
            )
    finally:
        await publisher.close()
        await engine.dispose()


def caught_subjects(port: int) -> list[str]:
    answer = httpx.get(f"http://127.0.0.1:{port}/_dev/mail.json", timeout=5)
    return [message["subject"] for message in answer.json()["messages"]]


async def heartbeat_workers(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM worker_heartbeats"))
    finally:
        await connection.close()


def test_up_runs_supervises_and_stops_the_whole_platform(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "up.log"
    up = start_up(data_dir, port, log)
    try:
        wait_for(lambda: readiness(port)[0] == 200, READY_TIMEOUT, "a cold start", log)
        services = state(data_dir)
        assert set(services) == {
            "postgres",
            "valkey",
            "stripe-emulator",
            "mailcatcher",
            "app",
            "worker",
        }
        # Keys the environment did not set are generated once and kept private.
        secrets_file = data_dir / "secrets.json"
        generated = json.loads(secrets_file.read_text())
        assert set(generated) == {
            "JWT_SECRET",
            "TOKEN_PEPPER",
            "STRIPE_WEBHOOK_SECRET",
            "DEMO_PASSWORD",
        }
        assert generated["STRIPE_WEBHOOK_SECRET"].startswith("whsec_")
        emulator = httpx.get(services["stripe-emulator"]["url"] + "/_emulator/health", timeout=5)
        assert emulator.status_code == 200
        # Said once `up` itself has seen the platform ready (its own look may come after ours).
        demo_login = f"demo login: demo@computebill.dev / {generated['DEMO_PASSWORD']}"
        wait_for(lambda: demo_login in log.read_text(), 10, "the demo login", log)
        login = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/login",
            json={"email": "demo@computebill.dev", "password": generated["DEMO_PASSWORD"]},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        demo = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/me",
            headers={"authorization": f"Bearer {login.json()['access_token']}"},
            timeout=10,
        )
        assert demo.json()["email_verified"] is True  # the demo can buy at once
        catalog = httpx.get(f"http://127.0.0.1:{port}/api/v1/gpus", timeout=10).json()
        assert len(catalog["gpus"]) == 8
        # The worker serves its job metrics on a port of its own.
        worker_metrics = httpx.get(
            f"http://127.0.0.1:{services['worker']['port']}/metrics", timeout=5
        ).text
        assert 'computebill_jobs_total{job="record_worker_heartbeat",outcome="succeeded"}' in (
            worker_metrics
        )
        assert secrets_file.stat().st_mode & 0o077 == 0
        assert services["postgres"]["port"] not in (5432, port)
        assert services["valkey"]["port"] != 6379
        assert services["mailcatcher"]["port"] not in (25, 465, 587, 1025)

        # E-mail goes over SMTP to up's catcher and shows at /_dev/mail, which up names.
        wait_for(
            lambda: (
                f"e-mail the platform sends: http://127.0.0.1:{port}/_dev/mail" in log.read_text()
            ),
            10,
            "the mail page's URL",
            log,
        )
        assert caught_subjects(port) == []
        asyncio.run(send_through_up(services, "Your instances are ready"))
        wait_for(
            lambda: caught_subjects(port) == ["Your instances are ready"], 30, "caught mail", log
        )
        [caught] = list((data_dir / "mail").glob("*.eml"))
        page = httpx.get(f"http://127.0.0.1:{port}/_dev/mail/{caught.stem}", timeout=5)
        assert page.status_code == 200
        assert 'href="http://127.0.0.1/dashboard"' in page.text

        # A second copy on the same data directory refuses instead of corrupting it.
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "computebill",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(free_port()),
            ],
            env=embedded_environment(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 1
        assert f"(pid {up.pid}) is already using" in second.stderr

        # A Valkey that stops answering is named by /readyz.
        valkey_pid = services["valkey"]["pid"]
        os.kill(valkey_pid, signal.SIGSTOP)
        try:
            _, body = wait_for(
                lambda: (r := readiness(port))[0] == 503 and r, 30, "redis reported down", log
            )
            assert body["down"] == ["redis"]
        finally:
            os.kill(valkey_pid, signal.SIGCONT)

        # A server that dies is restarted by `up`, and the platform becomes ready again.
        for name in ("valkey", "postgres", "stripe-emulator", "mailcatcher"):
            old_pid = state(data_dir)[name]["pid"]
            os.kill(old_pid, signal.SIGKILL)
            wait_for(
                lambda n=name, p=old_pid: state(data_dir)[n]["pid"] != p,
                60,
                f"{name} restarted",
                log,
            )
            wait_for(lambda: readiness(port)[0] == 200, 60, f"ready after {name} died", log)
            assert f"{name} exited unexpectedly; restarting it" in log.read_text()
        services = state(data_dir)
    finally:
        if up.poll() is None:
            stop_up(up, [entry["pid"] for entry in state(data_dir).values()], log)
    assert "computebill up: stopped" in log.read_text()

    # Warm start on the same data directory keeps the data of the first run.
    up = start_up(data_dir, port, log)
    try:
        wait_for(lambda: readiness(port)[0] == 200, READY_TIMEOUT, "a warm start", log)
        database_url = state(data_dir)["postgres"]["url"]
        # Rows of the first run's worker and of this run's: the data survived the restart.
        wait_for(
            lambda: asyncio.run(heartbeat_workers(database_url)) >= 2,
            30,
            "the new worker's heartbeat next to the old one",
            log,
        )
    finally:
        stop_up(up, [entry["pid"] for entry in state(data_dir).values()], log)
