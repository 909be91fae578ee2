"""A real SMTP server (aiosmtpd) on a free port of 127.0.0.1, for the delivery tests: it keeps
what it receives, and may offer STARTTLS with a self-signed certificate, require a login, or
refuse every message with a reply of the test's choosing."""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Received:
    message: EmailMessage
    over_tls: bool
    login: str | None


@dataclass
class Recorder:
    """aiosmtpd's handler: keeps each message, or refuses it with `refusal` (e.g. a 550)."""

    received: list[Received] = field(default_factory=list)
    refusal: str | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refusal is not None:
            return self.refusal
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        message = BytesParser(policy=policy.default).parsebytes(content)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        # STARTTLS sets `session.ssl`; an implicit-TLS connection shows only in its transport.
        over_tls = session.ssl is not None or (
            server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None
        )
        self.received.append(Received(message, over_tls, login))
        return "250 OK"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SmtpServer:
    """Started and stopped by the test; `received` is what it took."""

    def __init__(
        self,
        port: int,
        *,
        certificate: tuple[Path, Path] | None = None,
        logins: dict[str, str] | None = None,
        implicit_tls: bool = False,
    ) -> None:
        """With a `certificate`, STARTTLS is required, or (`implicit_tls`) the connection is TLS
        from its first byte, as on port 465."""
        self.port = port
        self.recorder = Recorder()
        tls_context: ssl.SSLContext | None = None
        if certificate is not None:
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(*certificate)
        starttls = None if implicit_tls else tls_context
        self.controller = Controller(
            self.recorder,
            hostname="127.0.0.1",
            port=port,
            ssl_context=tls_context if implicit_tls else None,
            tls_context=starttls,
            require_starttls=starttls is not None,
            authenticator=self._authenticate if logins is not None else None,
            auth_required=logins is not None,
            # aiosmtpd counts only STARTTLS as TLS here; an implicit-TLS connection is TLS anyway.
            auth_require_tls=not implicit_tls,
        )
        self.logins = logins or {}

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        ok = self.logins.get(data.login.decode()) == data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=data.login)

    @property
    def received(self) -> list[Received]:
        return self.recorder.received

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.controller.stop()
