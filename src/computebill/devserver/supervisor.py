"""`computebill up`: the whole platform on one machine, under one supervisor.

Embedded PostgreSQL and Valkey where no URL is configured, migrations, then the app and the worker
as child processes. A child that dies is restarted (at most `MAX_RESTARTS` times a minute, then
`up` stops everything and exits with a message naming it). SIGINT/SIGTERM stop the app and the
worker first, then the servers, so nothing is cut off mid-write.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from computebill.config import Settings, child_environment
from computebill.devserver.demo import DEMO_EMAIL, ensure_demo_account
from computebill.devserver.embedded import (
    EmbeddedMailCatcher,
    EmbeddedPostgres,
    EmbeddedServer,
    EmbeddedStripeEmulator,
    EmbeddedValkey,
    free_port,
    spawn,
    stop_process,
)
from computebill.migrations import upgrade_to_head
from computebill.seed import seed

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 120.0
CHILD_STOP_TIMEOUT_SECONDS = 20.0
STATE_FILE = "up.json"
SECRETS_FILE = "secrets.json"
# Keys the app needs; made once per data directory when the environment does not set them.
GENERATED_SECRETS = ("JWT_SECRET", "TOKEN_PEPPER", "STRIPE_WEBHOOK_SECRET")
EMULATOR_API_KEY = "sk_test_computebill_emulator"
DEMO_PASSWORD = "DEMO_PASSWORD"  # noqa: S105 - the name of an entry, not its value
LOCK_FILE = "up.lock"


class UpError(RuntimeError):
    """`up` cannot go on; the message says why and what to do."""


def say(message: str) -> None:
    print(f"computebill up: {message}", file=sys.stderr, flush=True)


class Supervised(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def is_running(self) -> bool: ...


class DataDirLock:
    """An exclusive lock on the data directory, released by the kernel if we die."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UpError(
                f"another `computebill up` (pid {holder}) is already using {self.path.parent}; "
                "stop it first, or pass a different --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class Child:
    """A platform process (app or worker) that `up` runs and restarts."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: IO[bytes] | None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = spawn(self.argv, log=self.log, env=self.env)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM, CHILD_STOP_TIMEOUT_SECONDS)


@dataclass
class RestartBudget:
    restarts: dict[str, deque[float]] = field(default_factory=dict)

    def spend(self, name: str) -> bool:
        now = time.monotonic()
        recent = self.restarts.setdefault(name, deque())
        while recent and now - recent[0] > RESTART_WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= MAX_RESTARTS:
            return False
        recent.append(now)
        return True


class Platform:
    def __init__(self, settings: Settings, *, host: str, port: int, data_dir: Path) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.data_dir = data_dir.resolve()
        self.lock = DataDirLock(self.data_dir)
        self.servers: list[EmbeddedServer] = []
        self.children: list[Child] = []
        self.budget = RestartBudget()
        self.demo_password = ""
        self.worker_metrics_port: int | None = None
        self.mail_page: str | None = None  # the caught e-mail's page, when `up` catches it
        self._stopping = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _recorded_ports(self) -> dict[str, int]:
        try:
            state = json.loads((self.data_dir / STATE_FILE).read_text())
            return {name: int(entry["port"]) for name, entry in state.items() if "port" in entry}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def _write_state(self) -> None:
        state = {
            server.name: {"pid": server.pid, "port": server.port, "url": server.url}
            for server in self.servers
        }
        for child in self.children:
            state[child.name] = {"pid": child.pid}
        state["app"]["port"] = self.port
        if self.worker_metrics_port is not None:
            state["worker"]["port"] = self.worker_metrics_port
        path = self.data_dir / STATE_FILE
        path.with_suffix(".tmp").write_text(json.dumps(state, indent=2))
        path.with_suffix(".tmp").replace(path)

    def _start_servers(self) -> dict[str, str]:
        ports = self._recorded_ports()
        overrides: dict[str, str] = {}
        if self.settings.database_url is None:
            postgres = EmbeddedPostgres(
                self.data_dir / "postgres", free_port(ports.get("postgres"))
            )
            say(f"starting PostgreSQL on 127.0.0.1:{postgres.port} (data in {postgres.directory})")
            postgres.start()
            self.servers.append(postgres)
            overrides["DATABASE_URL"] = postgres.url
        if self.settings.redis_url is None:
            valkey = EmbeddedValkey(self.data_dir / "valkey", free_port(ports.get("valkey")))
            say(f"starting Valkey on 127.0.0.1:{valkey.port} (data in {valkey.directory})")
            valkey.start()
            self.servers.append(valkey)
            overrides["REDIS_URL"] = valkey.url
        if "mail_backend" not in self.settings.model_fields_set and self.settings.smtp_url is None:
            overrides |= self._start_mail_catcher()
        return overrides

    def _start_mail_catcher(self) -> dict[str, str]:
        """Without a mail backend of the environment's, e-mail goes over SMTP to a catcher that
        keeps it in the data directory, shown at /_dev/mail."""
        catcher = EmbeddedMailCatcher(
            self.data_dir / "mail", free_port(self._recorded_ports().get("mailcatcher"))
        )
        say(
            f"starting the SMTP catcher on 127.0.0.1:{catcher.port} (e-mail in {catcher.directory})"
        )
        catcher.start()
        self.servers.append(catcher)
        self.mail_page = f"{self.base_url}/_dev/mail"
        return {
            "MAIL_BACKEND": "smtp",
            "SMTP_URL": catcher.url,
            "DEV_MAIL_DIR": str(catcher.directory),
        }

    def _secrets(self) -> dict[str, str]:
        """Keys the environment does not set, and the demo password: made once, then kept."""
        path = self.data_dir / SECRETS_FILE
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = [
            name
            for name in GENERATED_SECRETS
            if getattr(self.settings, name.lower()) is None
            # A webhook secret is ours to make only for the emulator; Stripe's comes from Stripe.
            and not (name == "STRIPE_WEBHOOK_SECRET" and self.settings.stripe_secret_key)
        ]
        for name in [*missing, DEMO_PASSWORD]:
            prefix = "whsec_" if name == "STRIPE_WEBHOOK_SECRET" else ""
            length = 18 if name == DEMO_PASSWORD else 48
            stored.setdefault(name, prefix + secrets.token_urlsafe(length))
        path.touch(mode=0o600)
        path.write_text(json.dumps(stored, indent=2))
        self.demo_password = stored[DEMO_PASSWORD]
        return {name: stored[name] for name in missing}

    def _start_stripe_emulator(self, webhook_secret: str) -> dict[str, str]:
        """Without a Stripe key, Stripe is the emulator, delivering webhooks to our app."""
        emulator = EmbeddedStripeEmulator(
            self.data_dir / "stripe-emulator",
            free_port(self._recorded_ports().get("stripe-emulator")),
            forward_to=f"{self.base_url}/webhooks/stripe",
            webhook_secret=webhook_secret.split(",")[0],
        )
        say(f"starting the Stripe emulator on {emulator.url} (checkout pages, webhooks)")
        emulator.start()
        self.servers.append(emulator)
        return {"STRIPE_SECRET_KEY": EMULATOR_API_KEY, "STRIPE_API_BASE": emulator.url}

    def start(self) -> None:
        overrides = self._start_servers() | self._secrets()
        if self.settings.stripe_secret_key is None:
            configured = self.settings.stripe_webhook_secret
            webhook_secret = (
                configured.get_secret_value() if configured else overrides["STRIPE_WEBHOOK_SECRET"]
            )
            overrides |= self._start_stripe_emulator(webhook_secret)
        settings = self.settings.model_copy(
            update={
                "database_url": overrides.get("DATABASE_URL", self.settings.database_url),
                "redis_url": overrides.get("REDIS_URL", self.settings.redis_url),
            }
        )
        say("migrating the database and seeding the catalog")
        upgrade_to_head(settings)
        seed(settings)
        ensure_demo_account(settings, password=self.demo_password)
        if "public_base_url" not in self.settings.model_fields_set:
            overrides["PUBLIC_BASE_URL"] = self.base_url
        if self.settings.worker_metrics_port is None:
            self.worker_metrics_port = free_port(self._recorded_ports().get("worker"))
            overrides["WORKER_METRICS_PORT"] = str(self.worker_metrics_port)
        env = child_environment(overrides)
        log = None  # the app and the worker log to our own stderr
        python = sys.executable
        self.children = [
            Child(
                "app",
                [python, "-m", "computebill", "app", "--host", self.host, "--port", str(self.port)],
                env,
                log,
            ),
            Child("worker", [python, "-m", "computebill", "worker"], env, log),
        ]
        for child in self.children:
            child.start()
        self._write_state()

    def wait_until_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self._stopping:
            self.supervise_once()
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as answer:  # noqa: S310 - our own URL
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        return False

    def supervise_once(self) -> None:
        """Restart whatever died, servers first, within the restart budget."""
        processes: list[Supervised] = [*self.servers, *self.children]
        died = [process for process in processes if not process.is_running()]
        for process in died:
            if self._stopping:
                return
            if not self.budget.spend(process.name):
                raise UpError(
                    f"{process.name} died {MAX_RESTARTS} times within "
                    f"{RESTART_WINDOW_SECONDS:.0f} s; giving up (see the logs in {self.data_dir})"
                )
            say(f"{process.name} exited unexpectedly; restarting it")
            process.stop()
            process.start()
        if died:
            self._write_state()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def run_forever(self) -> None:
        while not self._stopping:
            self.supervise_once()
            time.sleep(0.5)

    def stop(self) -> None:
        self._stopping = True
        say("stopping")
        for child in reversed(self.children):
            child.stop()
        for server in reversed(self.servers):
            server.stop()
        say("stopped")


def run_up(settings: Settings, *, host: str, port: int, data_dir: Path) -> int:
    platform = Platform(settings, host=host, port=port, data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        platform.lock.acquire()
    except UpError as error:
        say(str(error))
        return 1
    signal.signal(signal.SIGINT, platform.request_stop)
    signal.signal(signal.SIGTERM, platform.request_stop)
    started = time.monotonic()
    try:
        platform.start()
        if platform.wait_until_ready():
            say(
                f"ready in {time.monotonic() - started:.1f} s: {platform.base_url} "
                f"(API docs at {platform.base_url}/api/docs); Ctrl-C stops everything"
            )
            say(f"demo login: {DEMO_EMAIL} / {platform.demo_password}")
            if platform.mail_page is not None:
                say(f"e-mail the platform sends: {platform.mail_page}")
        elif not platform.stopping:
            say(f"not ready after {READY_TIMEOUT_SECONDS:.0f} s; see {platform.base_url}/readyz")
        platform.run_forever()
    except UpError as error:
        say(str(error))
        return 1
    except Exception as error:
        say(f"failed: {error}")
        return 1
    finally:
        platform.stop()
        platform.lock.release()
    return 0
