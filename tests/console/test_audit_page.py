"""The console's audit-log page: every operator action with who, what, target, before and after,
and from where; filtered by operator and action; whatever an entry holds shown as text."""

from __future__ import annotations

from urllib.parse import quote

from computebill.auth.service import Role
from computebill.config import Settings
from tests.console.operators import operator_browser
from tests.support.http import Api
from tests.support.markup import elements
from tests.support.pages import Browser

MALICIOUS = '<script>alert("x")</script>'


async def test_the_audit_log_filters_and_shows_what_entries_hold_as_text(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    customer = (await api.sign_up(email))["user"]["id"]
    admin_email = await operator_browser(browser, settings, Role.ADMIN)
    page = f"/admin/customers/{customer}"
    posted = await browser.submit(
        f"{page}/credits", {"kind": "grant", "amount": "1.00", "reason": MALICIOUS}, form_page=page
    )
    assert posted.status_code == 303, posted.text
    browser.clock.advance(seconds=1)  # newest first: the revocation comes later
    revoked = await browser.submit(f"{page}/sessions/revoke", form_page=page)
    assert revoked.status_code == 303

    mine = await browser.page(f"/admin/audit?actor={quote(admin_email)}")
    assert mine.status_code == 200
    assert [e.attrs["data-audit-action"] for e in elements(mine.text, "data-audit-entry")] == [
        "sessions.revoked",
        "credit.posted",
    ]
    assert all(e.text == admin_email for e in elements(mine.text, "data-audit-actor"))
    # The reason is text on the page, never markup.
    assert MALICIOUS not in mine.text
    assert "&lt;script&gt;" in mine.text
    [reason] = elements(mine.text, "data-audit-reason")
    assert reason.text == MALICIOUS
    after = [e.text for e in elements(mine.text, "data-audit-after")]
    assert after[0] == '{ "revoked": 1 }'
    assert '"amount_cents": 100' in after[1]
    assert f'href="/admin/customers/{customer}"' in mine.text

    credits = await browser.page(f"/admin/audit?actor={quote(admin_email)}&action=credit.posted")
    assert [e.attrs["data-audit-action"] for e in elements(credits.text, "data-audit-entry")] == [
        "credit.posted"
    ]
    none = await browser.page("/admin/audit?action=no.such.action")
    assert elements(none.text, "data-audit-entry") == []
    assert elements(none.text, "data-audit-empty")


async def test_support_reads_the_log_and_bad_filters_are_refused_not_failed(
    browser: Browser, settings: Settings
) -> None:
    await operator_browser(browser, settings, Role.SUPPORT)
    assert (await browser.page("/admin/audit")).status_code == 200
    assert (await browser.page("/admin/audit?actor=%00")).status_code == 422
    assert (await browser.page("/admin/audit?cursor=not-a-cursor")).status_code == 422
    assert (await browser.page("/admin/customers?q=%00")).status_code == 422


async def test_anonymous_visitors_log_in_to_read_the_log(browser: Browser) -> None:
    answer = await browser.page("/admin/audit?action=credit.posted")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/admin/audit%3Faction%3Dcredit.posted"
