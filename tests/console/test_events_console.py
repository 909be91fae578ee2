"""The console's Stripe inbox: events listed by status and type (API and page), an event with its
payload, outcome and tries, its payload shown escaped, and an admin's replay from the page
through the same service as the API's."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from computebill.auth.service import Role
from computebill.config import Settings
from computebill.payments.models import EventStatus
from tests.console.operators import audit_entries, operator, operator_browser
from tests.console.records import add_event, every_page, sent_to_log_in
from tests.console.test_console_api import event_status
from tests.support.http import Api
from tests.support.markup import elements, the
from tests.support.pages import PASSWORD, Browser

START = datetime(2026, 11, 20, 12, tzinfo=UTC)


async def _inbox(settings: Settings) -> tuple[str, list[str]]:
    """Five events of a type of their own, received a minute apart, newest first: the second
    and the fourth failed, the rest were processed."""
    event_type = f"test.{secrets.token_hex(6)}"
    failing = {1, 3}
    events = [
        await add_event(
            settings,
            event_type=event_type,
            received_at=START - timedelta(minutes=age),
            status=EventStatus.FAILED if age in failing else EventStatus.PROCESSED,
            outcome=None if age in failing else "order paid",
            last_error="Stripe timed out" if age in failing else None,
        )
        for age in range(5)
    ]
    return event_type, events


async def test_staff_list_the_inbox_by_type_and_status_a_page_at_a_time(
    api: Api, settings: Settings
) -> None:
    token, _ = await operator(api, settings, Role.SUPPORT)
    event_type, events = await _inbox(settings)

    pages = await every_page(
        api, token, f"/api/v1/admin/events?type={event_type}&limit=2", "events"
    )
    assert pages == [events[:2], events[2:4], events[4:]]

    failed = await api.get(f"/api/v1/admin/events?type={event_type}&status=failed", token)
    listed = failed.json()["events"]
    assert [event["id"] for event in listed] == [events[1], events[3]]
    assert (listed[0]["status"], listed[0]["attempts"], listed[0]["last_error"]) == (
        "failed",
        5,
        "Stripe timed out",
    )
    # The type matches exactly.
    prefix = await api.get(f"/api/v1/admin/events?type={event_type[:-1]}", token)
    assert prefix.json()["events"] == []


@pytest.mark.parametrize(
    "query", ["status=lost", "limit=101", "cursor=nope", f"type={'x' * 101}", "type=a%00b"]
)
async def test_a_bad_inbox_filter_is_a_problem(api: Api, settings: Settings, query: str) -> None:
    token, _ = await operator(api, settings, Role.SUPPORT)
    answer = await api.get(f"/api/v1/admin/events?{query}", token)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_an_event_comes_with_its_payload_outcome_and_tries(
    api: Api, settings: Settings
) -> None:
    token, _ = await operator(api, settings, Role.SUPPORT)
    event_id = await add_event(
        settings,
        event_type="charge.refunded",
        received_at=START,
        obj={"id": "ch_1", "payment_intent": "pi_1"},
        outcome="order refunded",
    )
    answer = await api.get(f"/api/v1/admin/events/{event_id}", token)
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert event["payload"]["data"]["object"] == {"id": "ch_1", "payment_intent": "pi_1"}
    assert (event["type"], event["status"], event["outcome"], event["attempts"]) == (
        "charge.refunded",
        "processed",
        "order refunded",
        1,
    )
    assert event["received_at"].startswith("2026-11-20T12:00:00")
    assert event["processed_at"] is not None
    assert (await api.get("/api/v1/admin/events/evt_missing", token)).status_code == 404
    assert (await api.get("/api/v1/admin/events/evt%00", token)).status_code == 422


async def test_customers_and_strangers_cannot_read_the_inbox(
    api: Api, settings: Settings, email: str
) -> None:
    customer = await api.sign_up(email)
    event_id = await add_event(settings, event_type="charge.refunded", received_at=START)
    for path in ("/api/v1/admin/events", f"/api/v1/admin/events/{event_id}"):
        assert (await api.get(path, customer["access_token"])).status_code == 403
        assert (await api.http.get(path)).status_code == 401


# The pages ---------------------------------------------------------------------------------


async def test_anonymous_visitors_are_sent_to_log_in(browser: Browser) -> None:
    await sent_to_log_in(browser, "/admin/events", "/admin/events/evt_1")


async def test_customers_get_403_on_the_inbox_pages_and_the_replay(
    browser: Browser, settings: Settings, email: str
) -> None:
    await browser.sign_up(email)
    event_id = await add_event(settings, event_type="charge.refunded", received_at=START)
    for path in ("/admin/events", f"/admin/events/{event_id}"):
        assert (await browser.page(path)).status_code == 403
    replay = await browser.submit(f"/admin/events/{event_id}/replay", form_page="/account/orders")
    assert replay.status_code == 403
    assert await event_status(settings, event_id) is EventStatus.PROCESSED


async def test_the_inbox_page_filters_and_pages(browser: Browser, settings: Settings) -> None:
    await operator_browser(browser, settings, Role.SUPPORT)
    event_type, events = await _inbox(settings)

    answer = await browser.page(f"/admin/events?type={event_type}&status=")
    assert answer.status_code == 200, answer.text
    rows = elements(answer.text, "data-event")
    assert [row.attrs["data-event"] for row in rows] == events
    assert rows[0].find("a", href=f"/admin/events/{events[0]}")

    failed = await browser.page(f"/admin/events?type={event_type}&status=failed")
    rows = elements(failed.text, "data-event")
    assert [row.attrs["data-event"] for row in rows] == [events[1], events[3]]
    assert "Stripe timed out" in rows[0].text

    refused = await browser.page("/admin/events?status=lost")
    assert refused.status_code == 422
    assert the(refused.text, "data-filter-error").text


async def test_the_event_page_shows_the_payload_escaped(
    browser: Browser, settings: Settings
) -> None:
    await operator_browser(browser, settings, Role.SUPPORT)
    event_id = await add_event(
        settings,
        event_type="checkout.session.completed",
        received_at=START,
        obj={"id": "cs_1", "metadata": {"note": "<script>alert(1)</script>"}},
        outcome="order paid",
    )

    answer = await browser.page(f"/admin/events/{event_id}")

    assert answer.status_code == 200, answer.text
    assert "<script>alert(1)</script>" not in answer.text
    payload = the(answer.text, "data-event-payload")
    assert '"note": "<script>alert(1)</script>"' in payload.text  # indented JSON, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    assert the(answer.text, "data-event-outcome").text == "order paid"
    assert the(answer.text, "data-event-attempts").text == "1"
    assert the(answer.text, "data-stripe-link").attrs["href"] == (
        f"https://dashboard.stripe.com/test/events/{event_id}"
    )
    # Support reads it; only an admin can replay it.
    assert elements(answer.text, "data-replay-form") == []
    replay = await browser.submit(f"/admin/events/{event_id}/replay", form_page="/admin/events")
    assert replay.status_code == 403
    assert await event_status(settings, event_id) is EventStatus.PROCESSED


async def test_an_admin_replays_an_event_from_its_page(
    browser: Browser, settings: Settings
) -> None:
    admin_email = await operator_browser(browser, settings, Role.ADMIN)
    event_id = await add_event(
        settings,
        event_type="charge.refunded",
        received_at=START,
        status=EventStatus.FAILED,
        outcome=None,
        last_error="boom",
    )
    page = f"/admin/events/{event_id}"
    form = the((await browser.page(page)).text, "data-replay-form")
    assert form.attrs["action"] == f"{page}/replay"

    forged = await browser.http.post(f"{page}/replay")
    assert forged.status_code == 403  # no CSRF token
    assert await event_status(settings, event_id) is EventStatus.FAILED

    answer = await browser.submit(f"{page}/replay", form_page=page)

    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{page}?replayed=1"
    assert await event_status(settings, event_id) is EventStatus.PENDING
    shown = await browser.page(answer.headers["location"])
    assert the(shown.text, "data-replayed")
    operator_api = Api(app=browser.app, http=browser.http, clock=browser.clock)
    [entry] = await audit_entries(
        operator_api, browser.access_token, actor=admin_email, action="event.replayed"
    )
    assert (entry["target_type"], entry["target_id"]) == ("stripe_event", event_id)

    unknown = await browser.submit("/admin/events/evt_missing/replay", form_page=page)
    assert unknown.status_code == 404


async def test_a_replay_long_after_logging_in_needs_the_password(
    browser: Browser, settings: Settings
) -> None:
    await operator_browser(browser, settings, Role.ADMIN)
    event_id = await add_event(
        settings, event_type="charge.refunded", received_at=START, status=EventStatus.FAILED
    )
    page = f"/admin/events/{event_id}"
    browser.clock.advance(minutes=16)
    assert the((await browser.page(page)).text, "data-recent-login-field")

    refused = await browser.submit(f"{page}/replay", form_page=page)
    assert refused.status_code == 403
    wrong = await browser.submit(f"{page}/replay", {"password": "not it"}, form_page=page)
    assert wrong.status_code == 403
    assert await event_status(settings, event_id) is EventStatus.FAILED

    answer = await browser.submit(f"{page}/replay", {"password": PASSWORD}, form_page=page)
    assert answer.status_code == 303, answer.text
    assert await event_status(settings, event_id) is EventStatus.PENDING


async def test_the_inbox_page_goes_on_to_older_events_without_repeating_one(
    browser: Browser, settings: Settings
) -> None:
    await operator_browser(browser, settings, Role.SUPPORT)
    event_type = f"test.{secrets.token_hex(6)}"
    events = [
        await add_event(settings, event_type=event_type, received_at=START - timedelta(seconds=age))
        for age in range(26)  # a page and one more
    ]

    first = await browser.page(f"/admin/events?type={event_type}&status=")
    on_first = [row.attrs["data-event"] for row in elements(first.text, "data-event")]
    older = the(first.text, "data-pager").find("a", rel="next")[0]["href"]
    assert older is not None
    assert f"type={event_type}" in older
    second = await browser.page(older)

    on_second = [row.attrs["data-event"] for row in elements(second.text, "data-event")]
    assert (on_first, on_second) == (events[:25], events[25:])
    assert elements(second.text, "data-pager") == []
