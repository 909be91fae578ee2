"""E-mail over SMTP to a real server: plain, STARTTLS with a login, the MIME structure, tries
after an outage, a permanent refusal, a job run twice or twice at once, and the sweep."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.config import MailBackend, Settings, load_settings
from computebill.db import create_sessionmaker, unit_of_work
from computebill.devserver.embedded import free_port
from computebill.devserver.scratch import Sessions
from computebill.jobs import JobContext, JobName
from computebill.mail.compose import Attachment
from computebill.mail.jobs import deliver_email, sweep_queued_emails
from computebill.mail.models import EmailStatus, OutboxEmail
from computebill.mail.service import LOST_AFTER, send_email
from tests.mail.smtp_server import SmtpServer, self_signed_certificate
from tests.support.clock import MovableClock
from tests.support.jobs import RecordingPublisher, job_context

LINK = "http://127.0.0.1:8000/billing#top-up"
BODY = f"Your credit is low: <b>$1.00</b> & falling.\n\nAdd credit: {LINK}"
PDF = Attachment("CB-2026-000001.pdf", "application/pdf", b"%PDF-1.4 test")


@pytest.fixture
def sessions(engine: AsyncEngine) -> Sessions:
    return create_sessionmaker(engine)


def smtp_settings(settings: Settings, url: str, **more: object) -> Settings:
    return load_settings(
        **{**settings.model_dump(), "mail_backend": "smtp", "smtp_url": url, **more}
    )


class Worker:
    """Runs the mail jobs as the worker would, on a clock the test moves, keeping the jobs they
    ask for."""

    def __init__(self, settings: Settings, sessions: Sessions) -> None:
        self.clock = MovableClock()
        self.requested = RecordingPublisher()
        self.context: JobContext = dataclasses.replace(
            job_context(settings, sessions, self.requested), clock=self.clock
        )

    async def deliver(self, email_id: uuid.UUID) -> None:
        await deliver_email(self.context, str(email_id))

    async def sweep(self) -> None:
        await sweep_queued_emails(self.context)


async def queue_email(
    sessions: Sessions, *, now: datetime, attachments: tuple[Attachment, ...] = ()
) -> uuid.UUID:
    """An e-mail recorded by the smtp backend; its transaction asks for its delivery."""
    requested = RecordingPublisher()
    key = f"test:{secrets.token_hex(6)}"
    async with unit_of_work(sessions, requested) as db:
        assert await send_email(
            db,
            backend=MailBackend.SMTP,
            dedupe_key=key,
            recipient="ada@example.com",
            subject="Credit is low",
            body=BODY,
            now=now,
            attachments=attachments,
        )
        assert requested.sent == []  # only once committed
        email_id = await db.scalar(select(OutboxEmail.id).where(OutboxEmail.dedupe_key == key))
    assert email_id is not None
    assert [(r.name, r.args) for r in requested.sent] == [(JobName.DELIVER_EMAIL, (str(email_id),))]
    return email_id


async def stored(sessions: Sessions, email_id: uuid.UUID) -> OutboxEmail:
    async with unit_of_work(sessions) as db:
        email = await db.get(OutboxEmail, email_id)
    assert email is not None
    return email


async def test_a_message_goes_out_as_text_html_and_attachment_once(
    settings: Settings, sessions: Sessions
) -> None:
    port = free_port()
    # No starttls in the URL: opportunistic, and this server offers none, so plain text.
    worker = Worker(smtp_settings(settings, f"smtp://127.0.0.1:{port}"), sessions)
    email_id = await queue_email(sessions, now=worker.clock.now(), attachments=(PDF,))
    assert (await stored(sessions, email_id)).status == EmailStatus.QUEUED
    with SmtpServer(port) as server:
        await worker.deliver(email_id)
        await worker.deliver(email_id)  # a repeated job finds it sent
    [received] = server.received
    email = await stored(sessions, email_id)
    assert (email.status, email.attempts, email.sent_at) == (
        EmailStatus.SENT,
        1,
        worker.clock.now(),
    )
    assert worker.requested.sent == []

    message = received.message
    assert not received.over_tls
    assert message["To"] == "ada@example.com"
    assert message["From"] == settings.mail_from
    assert message["Subject"] == "Credit is low"
    assert message["Message-ID"] == f"<{email_id}@localhost>"
    assert message.get_content_type() == "multipart/mixed"
    [alternative, attachment] = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    text, html = alternative.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().replace("\r\n", "\n").strip() == BODY
    assert html.get_content_type() == "text/html"
    html_text = html.get_content().replace("\r\n", "\n").strip()
    # The text's markup is escaped, its URL a link, its paragraphs paragraphs.
    assert "&lt;b&gt;$1.00&lt;/b&gt; &amp; falling." in html_text
    assert "<b>" not in html_text
    assert f'<a href="{LINK}"' in html_text
    assert html_text.count("<p ") == 2
    assert html_text == email.html_body
    assert attachment.get_filename() == PDF.filename
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == PDF.content


async def test_starttls_with_a_trusted_certificate_and_a_login(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    port = free_port()
    certificate = self_signed_certificate(tmp_path)
    url = f"smtp://mailer%40example.com:p%40ss%3Aword@127.0.0.1:{port}?starttls=required"
    worker = Worker(smtp_settings(settings, url, smtp_ca_file=str(certificate[0])), sessions)
    email_id = await queue_email(sessions, now=worker.clock.now())
    with SmtpServer(
        port, certificate=certificate, logins={"mailer@example.com": "p@ss:word"}
    ) as server:
        await worker.deliver(email_id)
    [received] = server.received
    assert received.over_tls
    assert received.login == "mailer@example.com"
    assert (await stored(sessions, email_id)).status == EmailStatus.SENT


# aiosmtpd warns that AUTH is allowed without STARTTLS: over smtps the whole connection is TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtps_is_tls_from_the_first_byte_with_a_login(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    port = free_port()
    certificate = self_signed_certificate(tmp_path)
    url = f"smtps://mailer:secret@127.0.0.1:{port}"
    worker = Worker(smtp_settings(settings, url, smtp_ca_file=str(certificate[0])), sessions)
    email_id = await queue_email(sessions, now=worker.clock.now())
    with SmtpServer(
        port, certificate=certificate, logins={"mailer": "secret"}, implicit_tls=True
    ) as server:
        await worker.deliver(email_id)
    [received] = server.received
    assert received.over_tls
    assert received.login == "mailer"
    assert (await stored(sessions, email_id)).status == EmailStatus.SENT


async def test_a_wrong_password_fails_at_once_and_an_untrusted_certificate_waits(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    port = free_port()
    certificate = self_signed_certificate(tmp_path)
    base = smtp_settings(
        settings,
        f"smtp://mailer:wrong@127.0.0.1:{port}?starttls=required",
        smtp_ca_file=str(certificate[0]),
    )
    refused, untrusted = (
        Worker(base, sessions),
        Worker(
            smtp_settings(settings, f"smtp://mailer:secret@127.0.0.1:{port}?starttls=required"),
            sessions,
        ),
    )
    refused_id = await queue_email(sessions, now=refused.clock.now())
    untrusted_id = await queue_email(sessions, now=untrusted.clock.now())
    with SmtpServer(port, certificate=certificate, logins={"mailer": "secret"}) as server:
        await refused.deliver(refused_id)
        await untrusted.deliver(untrusted_id)  # the system's roots do not know this certificate
    assert server.received == []
    failed = await stored(sessions, refused_id)
    assert (failed.status, failed.attempts) == (EmailStatus.FAILED, 1)
    assert failed.last_error is not None
    assert failed.last_error.startswith("535")
    assert refused.requested.sent == []
    waiting = await stored(sessions, untrusted_id)
    assert waiting.status == EmailStatus.QUEUED
    assert "certificate" in (waiting.last_error or "").lower()


async def test_a_server_down_is_tried_again_later_until_it_answers(
    settings: Settings, sessions: Sessions
) -> None:
    port = free_port()
    worker = Worker(
        smtp_settings(settings, f"smtp://127.0.0.1:{port}", mail_retry_seconds=30), sessions
    )
    email_id = await queue_email(sessions, now=worker.clock.now())
    await worker.deliver(email_id)  # nothing listens
    email = await stored(sessions, email_id)
    first_retry = worker.clock.now() + timedelta(seconds=30)
    assert (email.status, email.attempts, email.next_attempt_at) == (
        EmailStatus.QUEUED,
        1,
        first_retry,
    )
    assert email.last_error
    assert [(r.name, r.args, r.at) for r in worker.requested.sent] == [
        (JobName.DELIVER_EMAIL, (str(email_id),), first_retry)
    ]
    await worker.deliver(email_id)  # early: the wait is not over, so no try
    assert (await stored(sessions, email_id)).attempts == 1

    worker.clock.advance(seconds=30)
    await worker.deliver(email_id)  # still down: the wait doubles
    email = await stored(sessions, email_id)
    assert (email.attempts, email.next_attempt_at) == (
        2,
        worker.clock.now() + timedelta(seconds=60),
    )

    worker.clock.advance(seconds=60)
    with SmtpServer(port) as server:
        await worker.deliver(email_id)
    assert len(server.received) == 1
    email = await stored(sessions, email_id)
    assert (email.status, email.attempts, email.last_error) == (EmailStatus.SENT, 3, None)


async def test_tries_are_bounded_then_the_e_mail_is_failed(
    settings: Settings, sessions: Sessions
) -> None:
    worker = Worker(
        smtp_settings(settings, f"smtp://127.0.0.1:{free_port()}", mail_max_attempts=2),
        sessions,
    )
    email_id = await queue_email(sessions, now=worker.clock.now())
    await worker.deliver(email_id)
    worker.clock.advance(hours=1)
    await worker.deliver(email_id)
    email = await stored(sessions, email_id)
    assert (email.status, email.attempts, email.next_attempt_at) == (EmailStatus.FAILED, 2, None)
    assert email.last_error
    assert len(worker.requested.sent) == 1  # a retry after the first try only


@pytest.mark.parametrize(
    ("refusal", "status", "retries"),
    [
        ("550 5.1.1 No such mailbox", EmailStatus.FAILED, 0),  # permanent: no other try
        ("451 4.3.0 Try again later", EmailStatus.QUEUED, 1),  # transient: tried again later
    ],
)
async def test_a_5xx_refusal_fails_at_once_and_a_4xx_is_tried_again(
    settings: Settings, sessions: Sessions, refusal: str, status: EmailStatus, retries: int
) -> None:
    port = free_port()
    worker = Worker(smtp_settings(settings, f"smtp://127.0.0.1:{port}"), sessions)
    email_id = await queue_email(sessions, now=worker.clock.now())
    with SmtpServer(port) as server:
        server.recorder.refusal = refusal
        await worker.deliver(email_id)
        await worker.deliver(email_id)  # a repeated job: held or failed, no other try
    email = await stored(sessions, email_id)
    assert (email.status, email.attempts, email.last_error) == (status, 1, refusal)
    assert [r.name for r in worker.requested.sent] == [JobName.DELIVER_EMAIL] * retries


async def test_two_jobs_at_once_send_one_message(settings: Settings, sessions: Sessions) -> None:
    port = free_port()
    worker = Worker(smtp_settings(settings, f"smtp://127.0.0.1:{port}"), sessions)
    email_id = await queue_email(sessions, now=worker.clock.now())
    with SmtpServer(port) as server:
        await asyncio.gather(*(worker.deliver(email_id) for _ in range(4)))
    assert len(server.received) == 1
    assert (await stored(sessions, email_id)).attempts == 1


async def test_the_sweep_asks_again_for_an_e_mail_whose_job_was_lost(
    settings: Settings, sessions: Sessions
) -> None:
    port = free_port()
    worker = Worker(smtp_settings(settings, f"smtp://127.0.0.1:{port}"), sessions)
    lost_id = await queue_email(sessions, now=worker.clock.now())  # its job never runs
    await worker.sweep()
    assert str(lost_id) not in {r.args[0] for r in worker.requested.sent}  # not lost yet

    worker.clock.advance(seconds=LOST_AFTER.total_seconds() + 1)
    await worker.sweep()
    assert (JobName.DELIVER_EMAIL, (str(lost_id),)) in {
        (r.name, r.args) for r in worker.requested.sent
    }
    with SmtpServer(port) as server:
        await worker.deliver(lost_id)
    assert len(server.received) == 1

    # Sent e-mails are not asked for again.
    worker.requested.sent.clear()
    worker.clock.advance(hours=1)
    await worker.sweep()
    assert str(lost_id) not in {r.args[0] for r in worker.requested.sent}


async def test_the_outbox_and_log_backends_record_the_e_mail_as_sent(
    settings: Settings, sessions: Sessions
) -> None:
    now = datetime.now(UTC)
    requested = RecordingPublisher()
    keys = {
        backend: f"test:{secrets.token_hex(6)}" for backend in (MailBackend.OUTBOX, MailBackend.LOG)
    }
    async with unit_of_work(sessions, requested) as db:
        for backend, key in keys.items():
            for _ in range(2):  # once per key
                sent = await send_email(
                    db,
                    backend=backend,
                    dedupe_key=key,
                    recipient="ada@example.com",
                    subject="Hello",
                    body="Hello",
                    html_body="<p>Hello, <strong>Ada</strong></p>",
                    now=now,
                )
            assert sent is False
        rows = list(
            await db.scalars(select(OutboxEmail).where(OutboxEmail.dedupe_key.in_(keys.values())))
        )
    assert requested.sent == []
    assert len(rows) == 2
    for row in rows:
        assert (row.status, row.attempts, row.sent_at) == (EmailStatus.SENT, 1, now)
        assert row.html_body is not None
        assert "<p>Hello, <strong>Ada</strong></p>" in row.html_body
