"""Handing a message to the SMTP server of SMTP_URL (aiosmtplib; docs/decisions/0008).

`smtp://` connects in plain text and upgrades with STARTTLS as the URL's `starttls` says
(`opportunistic`, the default: when the server offers it; `required`; `off`); `smtps://` is TLS
from the first byte. Ports default to 587 and 465. The URL's user and password log in.
Certificates are checked against SMTP_CA_FILE when set, else the system's.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote

import aiosmtplib

from computebill.config import Settings, StartTls, smtp_url_parts

SUBMISSION_PORT = 587
IMPLICIT_TLS_PORT = 465
PERMANENT_REPLY_CODES = range(500, 600)


class DeliveryFailed(Exception):
    """The server did not take the message; `permanent` when trying again cannot help (a 5xx
    reply), else the next try may succeed (no connection, a timeout, a 4xx reply)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    starttls: StartTls
    username: str | None
    password: str | None
    ca_file: str | None
    timeout_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> SmtpServer:
        if settings.smtp_url is None:
            raise ValueError("SMTP_URL is not set")
        url, starttls = smtp_url_parts(settings.smtp_url.get_secret_value())
        implicit_tls = url.scheme == "smtps"
        assert url.host is not None  # smtp_url_parts refuses a URL without one
        return cls(
            host=url.host,
            port=url.port or (IMPLICIT_TLS_PORT if implicit_tls else SUBMISSION_PORT),
            implicit_tls=implicit_tls,
            starttls=starttls,
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            ca_file=settings.smtp_ca_file,
            timeout_seconds=settings.smtp_timeout_seconds,
        )

    @property
    def start_tls_option(self) -> bool | None:
        if self.implicit_tls:
            return False
        return {StartTls.OPPORTUNISTIC: None, StartTls.REQUIRED: True, StartTls.OFF: False}[
            self.starttls
        ]


def _refusal(error: aiosmtplib.SMTPException) -> DeliveryFailed:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        permanent = all(code in PERMANENT_REPLY_CODES for code in codes)
        reasons = "; ".join(f"{r.code} {r.message}" for r in error.recipients)
        return DeliveryFailed(f"recipients refused: {reasons}", permanent=permanent)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return DeliveryFailed(
            f"{error.code} {error.message}", permanent=error.code in PERMANENT_REPLY_CODES
        )
    return DeliveryFailed(f"{type(error).__name__}: {error}", permanent=False)


async def send_message(server: SmtpServer, message: EmailMessage) -> None:
    """Deliver one message in one connection; raises DeliveryFailed."""
    try:
        await aiosmtplib.send(
            message,
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            start_tls=server.start_tls_option,
            cert_bundle=server.ca_file,
            timeout=server.timeout_seconds,
        )
    except aiosmtplib.SMTPException as error:
        raise _refusal(error) from error
    except OSError as error:  # refused, unreachable, TLS handshake
        raise DeliveryFailed(f"{type(error).__name__}: {error}", permanent=False) from error
