"""The e-mail that `computebill up`'s SMTP catcher caught: one `.eml` file per message in
DEV_MAIL_DIR, named `<UTC time>-<id>.eml`, so names sort oldest first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

CAUGHT_NAME = re.compile(r"^(?P<time>\d{8}T\d{12})Z-(?P<id>[0-9a-f]{12})$")
TIME_FORMAT = "%Y%m%dT%H%M%S%f"


def caught_file_name(received_at: datetime, message_id: str) -> str:
    return f"{received_at.astimezone(UTC):{TIME_FORMAT}}Z-{message_id}.eml"


@dataclass(frozen=True, slots=True)
class CaughtMail:
    id: str  # the file's name without `.eml`
    received_at: datetime
    sender: str
    recipients: str
    subject: str
    text: str
    html: str | None
    attachments: list[str]


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    return None if part is None else str(part.get_content())


def _read(path: Path) -> CaughtMail:
    found = CAUGHT_NAME.match(path.stem)
    assert found is not None
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return CaughtMail(
        id=path.stem,
        received_at=datetime.strptime(found["time"], TIME_FORMAT).replace(tzinfo=UTC),
        sender=str(message.get("From", "")),
        recipients=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        text=_part(message, "plain") or "",
        html=_part(message, "html"),
        attachments=[str(part.get_filename()) for part in message.iter_attachments()],
    )


def caught_mail(directory: Path, *, limit: int = 200) -> list[CaughtMail]:
    """The newest first."""
    names = sorted((p for p in directory.glob("*.eml") if CAUGHT_NAME.match(p.stem)), reverse=True)
    return [_read(path) for path in names[:limit]]


def caught_message(directory: Path, mail_id: str) -> CaughtMail | None:
    """One message by its id; None for an id that names none (or is not an id at all)."""
    path = directory / f"{mail_id}.eml"
    if not CAUGHT_NAME.match(mail_id) or not path.is_file():
        return None
    return _read(path)
