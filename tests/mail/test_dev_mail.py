"""`/_dev/mail`: absent unless DEV_MAIL_DIR is set; with it, what the SMTP catcher of
`computebill up` caught, as a list, a message with clickable links, and JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.app import create_app
from computebill.config import MailBackend, Settings, load_settings
from computebill.db import create_sessionmaker, unit_of_work
from computebill.devserver.embedded import EmbeddedMailCatcher, free_port
from computebill.mail.compose import Attachment
from computebill.mail.jobs import deliver_email
from computebill.mail.service import send_email
from tests.support.http import serve
from tests.support.jobs import RecordingPublisher, job_context
from tests.support.markup import elements, the

LINK = "http://127.0.0.1:8000/account/orders/42"
BODY = f"Thank you <for> your order.\n\nSee it: {LINK}"


@pytest.fixture(scope="module")
def catcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMailCatcher]:
    """The catcher `up` runs, as its own process."""
    server = EmbeddedMailCatcher(tmp_path_factory.mktemp("catcher") / "mail", free_port())
    server.start()
    yield server  # pytest stops it after the module's tests, passed or not
    server.stop()


@pytest.fixture
async def caught(settings: Settings, engine: AsyncEngine, catcher: EmbeddedMailCatcher) -> str:
    """A message sent through the smtp backend to the catcher; its subject."""
    smtp = load_settings(
        **{**settings.model_dump(), "mail_backend": "smtp", "smtp_url": catcher.url}
    )
    sessions = create_sessionmaker(engine)
    requested = RecordingPublisher()
    subject = f"Receipt {datetime.now(UTC):%H%M%S%f}"
    async with unit_of_work(sessions, requested) as db:
        await send_email(
            db,
            backend=MailBackend.SMTP,
            dedupe_key=f"test:{subject}",
            recipient="ada@example.com",
            subject=subject,
            body=BODY,
            now=datetime.now(UTC),
            attachments=[Attachment("receipt.pdf", "application/pdf", b"%PDF-1.4")],
        )
    [job] = requested.sent
    await deliver_email(job_context(smtp, sessions, RecordingPublisher()), str(job.args[0]))
    return subject


@pytest.fixture
async def dev_client(
    settings: Settings, catcher: EmbeddedMailCatcher
) -> AsyncIterator[httpx.AsyncClient]:
    with_catcher = settings.model_copy(update={"dev_mail_dir": str(catcher.directory)})
    async for http in serve(create_app(with_catcher)):
        yield http


async def test_the_page_does_not_exist_without_the_setting(client: httpx.AsyncClient) -> None:
    for path in ("/_dev/mail", "/_dev/mail.json", "/_dev/mail/20261203T000000000000Z-0123456789ab"):
        assert (await client.get(path)).status_code == 404


async def test_caught_mail_is_listed_newest_first_and_shown_with_links(
    dev_client: httpx.AsyncClient, caught: str
) -> None:
    listing = await dev_client.get("/_dev/mail")
    assert listing.status_code == 200
    rows = elements(listing.text, "data-caught-mail")
    assert caught in rows[0].text
    assert "ada@example.com" in rows[0].text
    mail_id = rows[0].attrs["data-caught-mail"]

    page = await dev_client.get(f"/_dev/mail/{mail_id}")
    assert page.status_code == 200
    assert the(page.text, "data-caught-subject").text == caught
    text = the(page.text, "data-caught-text")
    # The text escaped, its URL an anchor.
    assert "Thank you &lt;for&gt; your order." in page.text
    assert [a["href"] for a in text.find("a")] == [LINK]
    assert "receipt.pdf" in page.text
    frame = the(page.text, "data-caught-html")
    assert frame.attrs["src"] == f"/_dev/mail/{mail_id}/html"
    assert frame.attrs["sandbox"] == "allow-popups allow-popups-to-escape-sandbox"

    html = await dev_client.get(f"/_dev/mail/{mail_id}/html")
    assert html.status_code == 200
    assert "default-src 'none'" in html.headers["content-security-policy"]
    assert f'<a href="{LINK}"' in html.text
    assert "Thank you &lt;for&gt; your order." in html.text

    listed = (await dev_client.get("/_dev/mail.json")).json()["messages"]
    assert listed[0]["id"] == mail_id
    assert listed[0]["subject"] == caught
    assert listed[0]["recipients"] == "ada@example.com"
    assert LINK in listed[0]["text"]
    assert listed[0]["attachments"] == ["receipt.pdf"]
    by_accept = await dev_client.get("/_dev/mail", headers={"accept": "application/json"})
    assert by_accept.json()["messages"][0]["id"] == mail_id


async def test_only_this_machine_reads_caught_mail_and_ids_name_only_files_of_it(
    settings: Settings, catcher: EmbeddedMailCatcher, dev_client: httpx.AsyncClient
) -> None:
    assert (await dev_client.get("/_dev/mail/..%2F..%2Fsecrets")).status_code == 404
    assert (
        await dev_client.get("/_dev/mail/20261203T000000000000Z-0123456789ab")
    ).status_code == 404
    app = create_app(settings.model_copy(update={"dev_mail_dir": str(catcher.directory)}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as remote:
            assert (await remote.get("/_dev/mail")).status_code == 404
            assert (await remote.get("/_dev/mail.json")).status_code == 404
