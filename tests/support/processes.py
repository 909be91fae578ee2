"""Waiting for a child process's port, and stopping a child process."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until something accepts connections on the loopback `port`; fails with `log` when
    `process` exits first or 15 s pass."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes], *, within: float = 10) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `within` seconds."""
    process.terminate()
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
