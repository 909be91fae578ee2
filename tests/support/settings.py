"""The keys the test settings sign with, the environment that configures a child process
(an app, a worker, the command line) exactly like a test's settings, and the command line run
with it."""

from __future__ import annotations

import asyncio
import sys
from enum import Enum

from pydantic import SecretStr

from computebill.config import Settings, child_environment

TEST_JWT_SECRET = "test-jwt-secret-0123456789abcdef-0123456789"
TEST_TOKEN_PEPPER = "test-token-pepper-0123456789abcdef-01234567"


def settings_environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment that configures a child process exactly like these settings."""
    values: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        values[name.upper()] = str(value.value if isinstance(value, Enum) else value)
    return child_environment(values | overrides)


async def run_cli(settings: Settings, *args: str) -> tuple[int, str]:
    """`computebill ARGS…` as a process configured by `settings`, its stdin empty: its exit
    status, and what it wrote to stdout and stderr together."""
    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "computebill",
        *args,
        env=settings_environment(settings),
        stdin=asyncio.subprocess.DEVNULL,  # never a terminal: a command that would ask refuses
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await command.communicate()
    return int(command.returncode or 0), output.decode()
