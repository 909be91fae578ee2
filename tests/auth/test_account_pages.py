"""The account page: profile, password change and the sessions a user can see and end, through
the same services as the JSON API, in two browsers."""

from __future__ import annotations

import pytest

from computebill.auth.pages import describe_device
from tests.support.markup import Element, elements, the
from tests.support.pages import PASSWORD, Browser

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
NEW_PASSWORD = "a brand new passphrase"


@pytest.mark.parametrize(
    ("user_agent", "device"),
    [
        (CHROME_LINUX, "Chrome on Linux"),
        (FIREFOX_WINDOWS, "Firefox on Windows"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/18.1 Safari/605.1.15",
            "Safari on macOS",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "Safari on iPhone",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36",
            "Chrome on Android",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            "Chrome on ChromeOS",
        ),
        ("curl/8.5.0", "curl"),
        ("python-httpx/0.28.1", "python-httpx"),
        ("Mozilla/5.0 (compatible; SomeBot)", "Unknown browser"),
        ("", "Unknown device"),
    ],
)
def test_user_agents_read_as_devices(user_agent: str, device: str) -> None:
    assert describe_device(user_agent) == device


def _sessions(html: str) -> list[Element]:
    return elements(html, "data-session-row")


def _current(html: str) -> Element:
    [current] = [row for row in _sessions(html) if row.has("data-current-session")]
    return current


def _other_session_id(html: str) -> str:
    [other] = [row for row in _sessions(html) if not row.has("data-current-session")]
    session_id = other.attrs["data-session-id"]
    assert session_id
    return session_id


async def _signed_in_twice(browser: Browser, other_browser: Browser, email: str) -> None:
    """One account, signed in on a Chrome on Linux and on a Firefox on Windows."""
    browser.http.headers["user-agent"] = CHROME_LINUX
    other_browser.http.headers["user-agent"] = FIREFOX_WINDOWS
    await browser.sign_up(email)
    answer = await other_browser.log_in(email)
    assert answer.status_code == 303, answer.text


async def _signed_out(browser: Browser) -> bool:
    answer = await browser.page("/account")
    if answer.status_code == 303:
        assert answer.headers["location"] == "/login?next=/account"
        return True
    assert answer.status_code == 200, answer.text
    return False


async def test_the_account_page_needs_a_signed_in_user(browser: Browser) -> None:
    assert await _signed_out(browser)


async def test_the_account_page_shows_the_profile_and_links_to_the_orders(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    page = await browser.page("/account")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Test User" in page.text
    assert email in page.text
    assert "Member since" in page.text
    assert 'href="/account/orders"' in page.text
    # One session: this one, and nothing else to sign out of.
    assert len(_sessions(page.text)) == 1
    assert "This device" in _current(page.text).text
    assert "Sign out everywhere else" not in page.text


async def test_the_sessions_list_shows_both_browsers_and_marks_this_device(
    browser: Browser, other_browser: Browser, email: str
) -> None:
    await _signed_in_twice(browser, other_browser, email)

    page = (await browser.page("/account")).text
    rows = _sessions(page)
    assert len(rows) == 2
    assert "Chrome on Linux" in _current(page).text
    assert "This device" in _current(page).text
    [other] = [row for row in rows if not row.has("data-current-session")]
    assert "Firefox on Windows" in other.text
    assert "This device" not in other.text
    assert other.find("button", type="submit"), "another session has a Revoke button"
    assert "Revoke" in other.text
    assert "Revoke" not in _current(page).text
    assert "Sign out everywhere else" in page

    # The same list from the other browser marks the other row.
    theirs = (await other_browser.page("/account")).text
    assert "Firefox on Windows" in _current(theirs).text
    assert _current(theirs).attrs["data-session-id"] == _other_session_id(page)


async def test_revoking_a_session_signs_that_browser_out_on_its_next_request(
    browser: Browser, other_browser: Browser, email: str
) -> None:
    await _signed_in_twice(browser, other_browser, email)
    other_id = _other_session_id((await browser.page("/account")).text)

    answer = await browser.submit(f"/account/sessions/{other_id}/revoke", form_page="/account")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/account?notice=session-revoked"

    assert await _signed_out(other_browser)
    page = await browser.page(answer.headers["location"])
    assert "The session was signed out." in page.text
    assert [row.attrs["data-session-id"] for row in _sessions(page.text)] == [
        _current(page.text).attrs["data-session-id"]
    ]


async def test_sign_out_everywhere_else_keeps_only_this_browser(
    browser: Browser, other_browser: Browser, email: str
) -> None:
    await _signed_in_twice(browser, other_browser, email)

    answer = await browser.submit("/account/sessions/revoke-others", form_page="/account")
    assert answer.status_code == 303

    assert await _signed_out(other_browser)
    page = await browser.page(answer.headers["location"])
    assert "Every other session has been signed out." in page.text
    assert len(_sessions(page.text)) == 1
    assert "Chrome on Linux" in _current(page.text).text


async def test_a_wrong_current_password_is_shown_next_to_the_field_and_changes_nothing(
    browser: Browser, other_browser: Browser, email: str
) -> None:
    await _signed_in_twice(browser, other_browser, email)

    answer = await browser.submit(
        "/account/password",
        {"current_password": "not my password", "new_password": NEW_PASSWORD},
        form_page="/account",
    )
    assert answer.status_code == 403
    error = the(answer.text, "role")  # the one alert on the page
    assert error.attrs["id"] == "error-current_password"
    assert error.text == "The current password is wrong."
    assert 'id="field-current_password" value=""' in answer.text  # never echoed back

    too_short = await browser.submit(
        "/account/password",
        {"current_password": PASSWORD, "new_password": "short"},
        form_page="/account",
    )
    assert too_short.status_code == 422
    assert the(too_short.text, "role").attrs["id"] == "error-new_password"

    assert not await _signed_out(other_browser)
    assert (await other_browser.submit("/logout", form_page="/account")).status_code == 303
    assert (await other_browser.log_in(email)).status_code == 303  # the old password still works


async def test_changing_the_password_ends_the_other_browsers_session(
    browser: Browser, other_browser: Browser, email: str
) -> None:
    await _signed_in_twice(browser, other_browser, email)

    answer = await browser.submit(
        "/account/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        form_page="/account",
    )
    assert answer.status_code == 303
    page = await browser.page(answer.headers["location"])
    assert page.status_code == 200  # this browser stays signed in
    assert "Every other session has been signed out." in page.text
    assert len(_sessions(page.text)) == 1

    assert await _signed_out(other_browser)
    assert (await other_browser.log_in(email)).status_code == 401
    assert (await other_browser.log_in(email, NEW_PASSWORD)).status_code == 303


async def test_another_users_session_cannot_be_revoked(
    browser: Browser, other_browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    await other_browser.sign_up("other-" + email)
    theirs = _current((await other_browser.page("/account")).text).attrs["data-session-id"]

    answer = await browser.submit(f"/account/sessions/{theirs}/revoke", form_page="/account")
    assert answer.status_code == 404
    assert "No such session." in answer.text
    assert not await _signed_out(other_browser)
    assert not await _signed_out(browser)


def _name_field(html: str) -> str | None:
    [field] = the(html, "data-name-form").find("input", name="name")
    return field["value"]


async def test_the_name_is_edited_on_the_account_page_and_an_empty_one_clears_it(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)

    answer = await browser.submit(
        "/account/name", {"name": "  Ada Lovelace  "}, form_page="/account"
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/account?notice=name-changed"
    page = (await browser.page(answer.headers["location"])).text
    assert "Your name was saved." in page
    assert _name_field(page) == "Ada Lovelace"

    refused = await browser.submit("/account/name", {"name": "Ada\x00"}, form_page="/account")
    assert refused.status_code == 422
    error = the(refused.text, "role")
    assert error.attrs["id"] == "error-name"
    assert error.text == "The name has control characters."
    assert _name_field((await browser.page("/account")).text) == "Ada Lovelace"

    cleared = await browser.submit("/account/name", {"name": " "}, form_page="/account")
    assert cleared.status_code == 303
    assert _name_field((await browser.page("/account")).text) == ""


async def test_deleting_the_account_needs_the_password_and_signs_every_browser_out(
    browser: Browser, other_browser: Browser, email: str
) -> None:
    await _signed_in_twice(browser, other_browser, email)
    page = await browser.page("/account/delete")
    assert page.status_code == 200
    assert email in page.text
    assert "Your machines are terminated" in page.text

    wrong = await browser.submit(
        "/account/delete", {"password": "not my password"}, form_page="/account/delete"
    )
    assert wrong.status_code == 403
    assert the(wrong.text, "role").attrs["id"] == "error-password"
    assert not await _signed_out(other_browser)

    answer = await browser.submit(
        "/account/delete", {"password": PASSWORD}, form_page="/account/delete"
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/account/deleted"
    assert "Your account was deleted" in (await browser.page("/account/deleted")).text
    assert await _signed_out(browser)
    assert await _signed_out(other_browser)
    assert (await other_browser.log_in(email)).status_code == 401
