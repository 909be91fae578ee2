"""An e-mail's HTML part in the platform's look, and the MIME message that carries it.

The text part is what callers write; the HTML part is their HTML, or is made from the text
(paragraphs at blank lines, links where it names a URL), always escaped, inside one small layout
of tables and inline styles, which is what mail programs render.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)

# A URL up to the first space or bracket, without the punctuation that ends a sentence.
URL_PATTERN = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]")
_LINK_STYLE = "color:#6d28d9;"


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


def linked(text: str) -> Markup:
    """The text escaped, each URL in it an anchor to itself."""
    parts: list[Markup] = []
    position = 0
    for found in URL_PATTERN.finditer(text):
        url = found.group(0)
        parts.append(escape(text[position : found.start()]))
        parts.append(Markup('<a href="{0}" style="{1}">{0}</a>').format(url, _LINK_STYLE))
        position = found.end()
    parts.append(escape(text[position:]))
    return Markup("").join(parts)


def html_of_text(text: str) -> Markup:
    """Paragraphs at blank lines, line breaks within them, URLs as links: all escaped."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return Markup("\n").join(
        Markup('<p style="margin:0 0 12px;">{}</p>').format(
            Markup("<br>\n").join(linked(line) for line in paragraph.splitlines())
        )
        for paragraph in paragraphs
    )


def email_html(*, subject: str, text: str, html_content: str | None) -> str:
    """The whole HTML part: the layout around the caller's HTML (trusted: callers escape what
    they interpolate), or around the HTML made from the text."""
    content = Markup(html_content) if html_content is not None else html_of_text(text)  # noqa: S704 - the caller's own markup
    return _templates.get_template("email.html").render(subject=subject, content=content)


def mime_message(
    *,
    message_id: str,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str | None,
    attachments: Sequence[Attachment],
    created_at: datetime,
) -> EmailMessage:
    """multipart/alternative (text, then HTML), inside multipart/mixed when files go with it.
    The Message-ID is the e-mail's id, so a receiver can tell a repeat."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(created_at)
    domain = Address(addr_spec=parseaddr(sender)[1]).domain or "localhost"
    message["Message-ID"] = f"<{message_id}@{domain}>"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return message
