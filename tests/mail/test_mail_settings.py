"""The mail settings are checked when they are read, so a process never starts with a mail
backend it cannot use; the errors name the variable and never repeat the URL's password."""

from __future__ import annotations

import subprocess
import sys

import pytest

from computebill.config import ConfigurationError, StartTls, load_settings
from computebill.mail.smtp import SmtpServer


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mail_backend": "smtp"}, "MAIL_BACKEND=smtp needs SMTP_URL"),
        (
            {"mail_backend": "smtp", "smtp_url": "https://u:hunter2@mail.example"},
            "smtp:// or smtps://",
        ),
        (
            {"smtp_url": "smtp://u:hunter2@mail.example?starttls=maybe"},
            "opportunistic, required or off",
        ),
        (
            {"smtp_url": "smtps://u:hunter2@mail.example?starttls=off"},
            "smtps:// is TLS from the start",
        ),
        ({"mail_backend": "pigeon"}, "MAIL_BACKEND"),
    ],
)
def test_bad_mail_settings_are_refused_by_name(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(**values)
    assert message in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_url_says_the_server_its_tls_and_its_login() -> None:
    submission = SmtpServer.of(
        load_settings(mail_backend="smtp", smtp_url="smtp://me%40example.com:s%3Acret@mail.example")
    )
    assert (submission.host, submission.port, submission.implicit_tls) == (
        "mail.example",
        587,
        False,
    )
    assert submission.starttls is StartTls.OPPORTUNISTIC
    assert submission.start_tls_option is None  # upgrade when offered
    assert (submission.username, submission.password) == ("me@example.com", "s:cret")
    implicit = SmtpServer.of(load_settings(smtp_url="smtps://mail.example"))
    assert (implicit.port, implicit.implicit_tls, implicit.start_tls_option) == (465, True, False)
    assert implicit.username is None
    required = SmtpServer.of(load_settings(smtp_url="smtp://mail.example:2525?starttls=required"))
    assert (required.port, required.start_tls_option) == (2525, True)
    off = SmtpServer.of(load_settings(smtp_url="smtp://127.0.0.1:2525?starttls=off"))
    assert off.start_tls_option is False


def test_the_worker_refuses_to_start_with_the_smtp_backend_and_no_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "computebill", "worker"],
        env={"PATH": "/usr/bin:/bin", "MAIL_BACKEND": "smtp"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "MAIL_BACKEND=smtp needs SMTP_URL" in result.stderr
    assert "Traceback" not in result.stderr
