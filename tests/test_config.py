from __future__ import annotations

import subprocess
import sys

import pytest

from computebill.config import ConfigurationError, LogFormat, load_settings


def test_bad_values_are_refused_with_the_variable_named() -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(database_url="mysql://root@localhost/db", worker_concurrency=0)
    message = str(refused.value)
    assert "DATABASE_URL: Value error, must be a postgresql:// URL" in message
    assert "WORKER_CONCURRENCY" in message


def test_a_plain_postgres_url_is_driven_by_asyncpg() -> None:
    settings = load_settings(database_url="postgresql://app:pw@db.internal:5432/billing")
    assert settings.async_database_url == "postgresql+asyncpg://app:pw@db.internal:5432/billing"


def test_missing_service_urls_are_named() -> None:
    settings = load_settings(database_url="", redis_url="")
    with pytest.raises(ConfigurationError, match="DATABASE_URL is not set"):
        settings.check_services_configured()
    with pytest.raises(ConfigurationError, match="REDIS_URL is not set"):
        _ = settings.required_redis_url


def test_log_format_is_chosen_explicitly_or_by_terminal() -> None:
    assert load_settings(log_format="json").log_as_json is True
    assert load_settings(log_format="console").log_as_json is False
    assert load_settings().log_format is LogFormat.AUTO


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "computebill", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_refuses_a_bad_environment_before_starting() -> None:
    result = _run_cli(
        "app", env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "sqlite:///x.db", "LOG_LEVEL": "loud"}
    )
    assert result.returncode == 2
    assert result.stderr.startswith("Configuration error:")
    assert "DATABASE_URL: Value error, must be a postgresql:// URL" in result.stderr
    assert "LOG_LEVEL" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_worker_refuses_to_start_without_a_database() -> None:
    result = _run_cli("worker", env={"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://127.0.0.1:1"})
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr


def test_short_keys_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET must be at least 32 bytes"):
        load_settings(jwt_secret="too-short")
    with pytest.raises(ConfigurationError, match="TOKEN_PEPPER must be at least 32 bytes"):
        load_settings(token_pepper="too-short")


def test_the_app_refuses_to_start_without_its_keys() -> None:
    result = _run_cli(
        "app",
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
            "REDIS_URL": "redis://127.0.0.1:1/0",
        },
    )
    assert result.returncode == 2
    assert "TOKEN_PEPPER is not set" in result.stderr
