"""The console's customer pages: the search, a customer's page, ending their sessions (support
may) and posting credit (admins, with a recent login), each through the API's own service and
audit entry."""

from __future__ import annotations

import pytest

from computebill.auth.service import Role
from computebill.config import Settings
from tests.console.operators import audit_entries, operator_browser
from tests.support.http import Api
from tests.support.markup import Element, elements, the
from tests.support.pages import PASSWORD, Browser


async def _customer(api: Api, email: str) -> dict[str, str]:
    """A signed-up customer: their id and access token."""
    signed_up = await api.sign_up(email)
    return {"id": signed_up["user"]["id"], "token": signed_up["access_token"]}


def _one(html: str, attribute: str, value: str) -> Element:
    [found] = [e for e in elements(html, attribute) if e.attrs[attribute] == value]
    return found


POSTED = "credit.posted"


async def test_anonymous_visitors_log_in_and_customers_are_refused(
    browser: Browser, api: Api, email: str
) -> None:
    customer = await _customer(api, email)
    page = f"/admin/customers/{customer['id']}"
    answer = await browser.page(page)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next={page}"
    await browser.sign_up(f"other-{email}")
    for path in ("/admin/customers?q=a", page, "/admin/audit"):
        assert (await browser.page(path)).status_code == 403, path
    posted = await browser.submit(f"{page}/sessions/revoke", form_page="/account")
    assert posted.status_code == 403


async def test_support_finds_a_customer_and_sees_their_page_without_the_credit_form(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    customer = await _customer(api, email)
    await operator_browser(browser, settings, Role.SUPPORT)

    found = await browser.page(f"/admin/customers?q={email}")
    assert found.status_code == 200
    [row] = elements(found.text, "data-customer")
    assert row.attrs["data-customer"] == customer["id"]
    assert f'href="/admin/customers/{customer["id"]}"' in found.text

    page = await browser.page(f"/admin/customers/{customer['id']}")
    assert page.status_code == 200
    assert the(page.text, "data-customer-email").text == email
    assert the(page.text, "data-customer-id").text == customer["id"]
    figures = {e.attrs["data-figure"]: e.text for e in elements(page.text, "data-figure")}
    assert figures == {
        "balance": "$0.00",
        "role": "user",
        "verified": "verified",
        "two-factor": "off",
    }
    assert len(elements(page.text, "data-session")) == 1
    assert f'href="/admin/instances?customer={customer["id"]}"' in page.text
    assert elements(page.text, "data-auth-event")
    assert elements(page.text, "data-credit-form") == []


async def test_support_ends_a_customers_sessions_from_the_page_and_it_is_audited(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    customer = await _customer(api, email)
    support_email = await operator_browser(browser, settings, Role.SUPPORT)
    page = f"/admin/customers/{customer['id']}"

    answer = await browser.submit(f"{page}/sessions/revoke", form_page=page)

    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{page}?notice=revoked"
    assert (await api.get("/api/v1/me", customer["token"])).status_code == 401
    after = await browser.page(answer.headers["location"])
    assert the(after.text, "data-notice").text == "Every session of the customer is ended."
    assert elements(after.text, "data-session") == []
    [entry] = await audit_entries(api, browser.access_token, actor=support_email)
    assert (entry["action"], entry["target_id"], entry["after"]) == (
        "sessions.revoked",
        customer["id"],
        {"revoked": 1},
    )


async def test_a_form_without_the_csrf_token_is_refused(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    customer = await _customer(api, email)
    await operator_browser(browser, settings, Role.ADMIN)
    page = f"/admin/customers/{customer['id']}"
    await browser.page(page)
    for path, data in (
        (f"{page}/sessions/revoke", {}),
        (f"{page}/credits", {"kind": "grant", "amount": "5", "reason": "goodwill"}),
    ):
        answer = await browser.http.post(path, data=data)
        assert answer.status_code == 403, path
    assert (await api.get("/api/v1/me", customer["token"])).status_code == 200


async def test_support_may_not_post_credit(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    customer = await _customer(api, email)
    await operator_browser(browser, settings, Role.SUPPORT)
    page = f"/admin/customers/{customer['id']}"
    answer = await browser.submit(
        f"{page}/credits", {"kind": "grant", "amount": "5.00", "reason": "goodwill"}, form_page=page
    )
    assert answer.status_code == 403
    assert (await browser.page(page)).text.count("data-entry=") == 0


async def test_an_admin_grants_and_adjusts_credit_in_exact_cents_and_it_is_audited(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    customer = await _customer(api, email)
    admin_email = await operator_browser(browser, settings, Role.ADMIN)
    page = f"/admin/customers/{customer['id']}"
    assert the((await browser.page(page)).text, "data-credit-form")
    assert elements((await browser.page(page)).text, "data-recent-login-field") == []

    granted = await browser.submit(
        f"{page}/credits",
        {"kind": "grant", "amount": "25.10", "reason": "Launch week"},
        form_page=page,
    )
    assert granted.status_code == 303, granted.text
    assert granted.headers["location"] == f"{page}?notice=credited"
    browser.clock.advance(seconds=1)  # newest first: the adjustment comes later
    adjusted = await browser.submit(
        f"{page}/credits",
        {"kind": "adjustment", "amount": "-4.05", "reason": "Double credit"},
        form_page=page,
    )
    assert adjusted.status_code == 303, adjusted.text

    shown = await browser.page(page)
    amounts = [e.text for e in elements(shown.text, "data-entry-amount")]
    assert amounts == ["-$4.05", "$25.10"]
    assert _one(shown.text, "data-figure", "balance").text == "$21.05"
    entries = await audit_entries(api, browser.access_token, actor=admin_email, action=POSTED)
    assert [(e["after"]["amount_cents"], e["reason"]) for e in entries] == [  # type: ignore[index]
        (-405, "Double credit"),
        (2510, "Launch week"),
    ]


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"kind": "adjustment", "amount": "12.345", "reason": "x"}, "amount", "dollars and cents"),
        ({"kind": "adjustment", "amount": "ten", "reason": "x"}, "amount", "dollars and cents"),
        ({"kind": "adjustment", "amount": "5", "reason": "  "}, "reason", "needs a reason"),
        ({"kind": "grant", "amount": "-5", "reason": "x"}, "amount", "positive"),
        ({"kind": "adjustment", "amount": "0", "reason": "x"}, "amount", "moves the balance"),
        ({"kind": "adjustment", "amount": "2000000", "reason": "x"}, "amount", "$1,000,000.00"),
    ],
)
async def test_a_refused_credit_form_comes_back_with_the_reason_beside_its_field(
    browser: Browser,
    api: Api,
    settings: Settings,
    email: str,
    form: dict[str, str],
    field: str,
    message: str,
) -> None:
    customer = await _customer(api, email)
    await operator_browser(browser, settings, Role.ADMIN)
    page = f"/admin/customers/{customer['id']}"

    answer = await browser.submit(f"{page}/credits", form, form_page=page)

    assert answer.status_code == 422, answer.text
    assert message in _one(answer.text, "data-error", field).text
    assert elements(answer.text, "data-entry") == []


async def test_an_old_login_must_enter_the_password_to_post_credit(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    customer = await _customer(api, email)
    admin_email = await operator_browser(browser, settings, Role.ADMIN)
    page = f"/admin/customers/{customer['id']}"
    browser.clock.advance(minutes=16)
    shown = await browser.page(page)
    assert the(shown.text, "data-recent-login-field")
    form = {"kind": "grant", "amount": "7.00", "reason": "Sorry"}

    missing = await browser.submit(f"{page}/credits", form, form_page=page)
    assert missing.status_code == 403
    assert "enter your password" in the(missing.text, "data-recent-login-field").text.lower()
    wrong = await browser.submit(f"{page}/credits", {**form, "password": "wrong"}, form_page=page)
    assert wrong.status_code == 403
    assert "Wrong password." in the(wrong.text, "data-recent-login-field").text
    assert await audit_entries(api, browser.access_token, actor=admin_email, action=POSTED) == []

    right = await browser.submit(f"{page}/credits", {**form, "password": PASSWORD}, form_page=page)
    assert right.status_code == 303, right.text
    [entry] = await audit_entries(api, browser.access_token, actor=admin_email, action=POSTED)
    assert entry["after"]["amount_cents"] == 700  # type: ignore[index]
    # Proved again: the form no longer asks.
    assert elements((await browser.page(page)).text, "data-recent-login-field") == []
