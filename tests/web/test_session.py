"""Cookie sessions of the web pages: cookie attributes, fixation, transparent refresh, CSRF and
the rules that keep tokens out of URLs and logs (security checklist 10, 18-23)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from urllib.parse import quote, unquote

import pytest

from computebill.config import Settings
from computebill.state import app_state
from computebill.web.cookies import cookie_policy
from tests.support.pages import PASSWORD, Browser, browser_for


def _set_cookies(answer_headers: list[str]) -> dict[str, str]:
    """Set-Cookie headers by cookie name, as sent."""
    return {header.split("=", 1)[0]: header for header in answer_headers}


async def test_signup_sets_httponly_lax_cookies_without_secure_on_loopback_http(
    browser: Browser, email: str
) -> None:
    answer = await browser.sign_up(email)
    cookies = _set_cookies(answer.headers.get_list("set-cookie"))
    assert set(cookies) >= {"cb_access", "cb_refresh", "cb_csrf"}
    for header in cookies.values():
        lowered = header.lower()
        assert "httponly" in lowered
        assert "samesite=lax" in lowered
        assert "path=/" in lowered
        assert "secure" not in lowered  # plain http://127.0.0.1 in development


async def test_cookies_are_host_prefixed_and_secure_when_served_over_https(
    https_browser: Browser, email: str
) -> None:
    answer = await https_browser.sign_up(email)
    cookies = _set_cookies(answer.headers.get_list("set-cookie"))
    assert set(cookies) >= {"__Host-cb_access", "__Host-cb_refresh", "__Host-cb_csrf"}
    for header in cookies.values():
        parsed = SimpleCookie(header)
        morsel = next(iter(parsed.values()))
        assert morsel["secure"] is True
        assert morsel["httponly"] is True
        assert morsel["path"] == "/"
        assert morsel["samesite"].lower() == "lax"
        assert not morsel["domain"]  # __Host- cookies must not name a domain
    home = await https_browser.page("/")
    assert email in home.text


async def test_logging_in_replaces_every_cookie_set_before(
    browser: Browser, email: str, other_browser: Browser
) -> None:
    """No fixation: cookies planted before login (or another account's) are replaced, and a
    session this browser held before is ended."""
    await other_browser.sign_up("other-" + email)
    await browser.sign_up(email)
    policy = cookie_policy(app_state(browser.app).settings)
    before = {name: browser.http.cookies.get(name) for name in (policy.refresh, policy.csrf)}
    await browser.submit("/logout", form_page="/")
    jar = browser.http.cookies  # the domain the cookie jar files the server's cookies under:
    jar.set(policy.refresh, before[policy.refresh] or "", domain="testserver.local")
    jar.set(policy.access, "planted-by-an-attacker", domain="testserver.local")

    answer = await browser.log_in("other-" + email)
    assert answer.status_code == 303
    after = _set_cookies(answer.headers.get_list("set-cookie"))
    assert set(after) >= {policy.access, policy.refresh, policy.csrf}
    for name in (policy.refresh, policy.csrf):
        assert f"{name}={before[name]};" not in after[name]
    assert "planted-by-an-attacker" not in after[policy.access]
    assert "other-" + email in (await browser.page("/")).text


async def test_a_missing_access_cookie_is_renewed_from_the_refresh_cookie(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    policy = cookie_policy(app_state(browser.app).settings)
    first_refresh = browser.http.cookies.get(policy.refresh)
    browser.http.cookies.delete(policy.access)  # what the browser does when Max-Age runs out

    page = await browser.page("/")
    assert email in page.text
    renewed = _set_cookies(page.headers.get_list("set-cookie"))
    assert set(renewed) >= {policy.access, policy.refresh}
    assert browser.http.cookies.get(policy.refresh) != first_refresh  # rotated
    assert page.headers["cache-control"] == "no-store"


@pytest.fixture
async def refresh_limited_browser(settings: Settings) -> AsyncIterator[Browser]:
    strict = settings.model_copy(update={"rate_limit_refresh_per_session": "2/minute"})
    async for value in browser_for(strict):
        yield value


async def test_the_cookie_refresh_is_rate_limited_like_the_api(
    refresh_limited_browser: Browser, email: str
) -> None:
    browser = refresh_limited_browser
    await browser.sign_up(email)
    policy = cookie_policy(app_state(browser.app).settings)
    statuses = []
    for _ in range(3):
        browser.http.cookies.delete(policy.access)
        answer = await browser.page("/")
        statuses.append(answer.status_code)
    assert statuses == [200, 200, 429]
    assert policy.refresh not in _set_cookies(answer.headers.get_list("set-cookie"))


async def test_a_revoked_session_is_signed_out_on_its_next_request(
    browser: Browser, email: str, other_browser: Browser
) -> None:
    await browser.sign_up(email)
    await other_browser.log_in(email)
    sessions = await other_browser.page("/")
    assert email in sessions.text
    await browser.submit("/logout", form_page="/")  # ends only the first browser's session

    assert email in (await other_browser.page("/")).text
    assert email not in (await browser.page("/")).text


async def test_pages_that_need_a_user_send_visitors_to_login_and_back(
    browser: Browser, email: str
) -> None:
    answer = await browser.page("/dashboard?tab=running")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/dashboard%3Ftab%3Drunning"
    await browser.sign_up(email)
    await browser.submit("/logout", form_page="/")
    back = await browser.submit(
        "/login", {"email": email, "password": PASSWORD, "next": "/gpus/nvidia"}
    )
    assert back.headers["location"] == "/gpus/nvidia"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
async def test_login_never_redirects_to_another_site(
    browser: Browser, email: str, target: str
) -> None:
    await browser.sign_up(email)
    await browser.submit("/logout", form_page="/")
    answer = await browser.submit("/login", {"email": email, "password": PASSWORD, "next": target})
    assert answer.headers["location"] == "/dashboard"


@pytest.mark.parametrize(
    "target",
    [
        "/dashboard\r\nSet-Cookie: x=1",
        unquote("/account%0d%0aX-Injected:%20yes"),
        "/\t/evil.example",  # browsers drop the tab: //evil.example
        "/\n/evil.example",
        "/account\x00",
        "/account page",
        "/caf\u00e9",
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
async def test_a_next_path_with_control_characters_falls_back_to_the_dashboard(
    browser: Browser, email: str, target: str, htmx: bool
) -> None:
    """An htmx login answers HX-Redirect; a header with a line break would drop the connection."""
    await browser.sign_up(email)
    await browser.submit("/logout", form_page="/")
    assert (await browser.page(f"/login?next={quote(target)}")).status_code == 200
    answer = await browser.http.post(
        "/login",
        data={
            "csrf_token": browser.csrf_token,
            "email": email,
            "password": PASSWORD,
            "next": target,
        },
        headers={"hx-request": "true"} if htmx else {},
    )
    if htmx:
        assert answer.status_code == 204
        assert answer.headers["hx-redirect"] == "/dashboard"
    else:
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard"


async def test_wrong_credentials_are_shown_on_the_form(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    await browser.submit("/logout", form_page="/")
    answer = await browser.log_in(email, "not the password at all")
    assert answer.status_code == 401
    assert "The e-mail or password is wrong." in answer.text
    assert f'value="{email}"' in answer.text  # the e-mail is kept, the password is not


async def test_signup_errors_are_shown_next_to_their_field(browser: Browser, email: str) -> None:
    answer = await browser.submit("/signup", {"email": email, "password": "short"})
    assert answer.status_code == 422
    assert 'id="error-password"' in answer.text
    assert 'id="error-email"' not in answer.text


async def test_cross_site_posts_are_refused_and_change_nothing(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    token = browser.csrf_token
    for headers in ({"sec-fetch-site": "cross-site"}, {"origin": "https://evil.example"}):
        answer = await browser.http.post("/logout", data={"csrf_token": token}, headers=headers)
        assert answer.status_code == 403
        assert "another site" in answer.text
        assert email in (await browser.page("/")).text  # still signed in
    # The Origin is compared with PUBLIC_BASE_URL's, not with the Host the request names.
    for origin in ("http://testserver", "http://127.0.0.1:8001", "https://127.0.0.1:8000"):
        answer = await browser.http.post(
            "/logout", data={"csrf_token": token}, headers={"origin": origin}
        )
        assert answer.status_code == 403, origin
    same_site = await browser.http.post(
        "/logout",
        data={"csrf_token": token},
        headers={"sec-fetch-site": "same-origin", "origin": "http://127.0.0.1:8000"},
    )
    assert same_site.status_code == 303


async def test_forms_without_this_browsers_csrf_token_are_refused(
    browser: Browser, email: str, other_browser: Browser
) -> None:
    await browser.sign_up(email)
    await other_browser.page("/login")
    for data in ({}, {"csrf_token": other_browser.csrf_token}):
        answer = await browser.http.post("/logout", data=data)
        assert answer.status_code == 403
        assert email in (await browser.page("/")).text
    # The login form is protected too.
    refused = await other_browser.http.post("/login", data={"email": email, "password": PASSWORD})
    assert refused.status_code == 403
    assert (await other_browser.log_in(email)).status_code == 303


def _plant_csrf_cookie(browser: Browser, token: str) -> None:
    """Put `token` in the browser's CSRF cookie, as an attacker able to set cookies would."""
    policy = cookie_policy(app_state(browser.app).settings)
    browser.http.cookies.delete(policy.csrf)
    browser.http.cookies.set(policy.csrf, token, domain="testserver.local")


async def test_a_csrf_token_is_good_only_for_the_session_it_was_signed_for(
    browser: Browser, email: str, other_browser: Browser
) -> None:
    """Checklist 20: session A's token, sent by session B's browser as both the cookie and the
    field (a planted cookie defeats a plain double submit), is refused."""
    await browser.sign_up(email)
    await other_browser.sign_up("other-" + email)
    stolen = browser.csrf_token
    _plant_csrf_cookie(other_browser, stolen)
    refused = await other_browser.http.post("/logout", data={"csrf_token": stolen})
    assert refused.status_code == 403
    assert "other-" + email in (await other_browser.page("/")).text
    own = await browser.http.post("/logout", data={"csrf_token": stolen})
    assert own.status_code == 303


async def test_signing_in_rotates_the_csrf_token(browser: Browser, email: str) -> None:
    """No login fixation of the token: the one a signed-out visitor had is not good after
    signing in, even planted back as the cookie."""
    await browser.sign_up(email)
    await browser.submit("/logout", form_page="/")
    await browser.page("/login")
    before = browser.csrf_token
    assert (await browser.log_in(email)).status_code == 303
    assert browser.csrf_token != before
    _plant_csrf_cookie(browser, before)
    refused = await browser.http.post("/logout", data={"csrf_token": before})
    assert refused.status_code == 403
    assert email in (await browser.page("/")).text  # and the page issued a good token again
    assert browser.csrf_token != before
    assert (await browser.submit("/logout", form_page="/")).status_code == 303


async def test_htmx_requests_carry_the_token_in_a_header(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    page = await browser.page("/")
    assert f'"X-CSRF-Token": "{browser.csrf_token}"' in page.text
    answer = await browser.http.post(
        "/logout", headers={"x-csrf-token": browser.csrf_token, "hx-request": "true"}
    )
    assert answer.status_code == 204
    assert answer.headers["hx-redirect"] == "/"


async def test_the_json_api_ignores_session_cookies(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    assert (await browser.http.get("/api/v1/me")).status_code == 401
    plain = await browser.http.post(
        "/api/v1/cart/items", content=b"gpu=nvidia-h100", headers={"content-type": "text/plain"}
    )
    assert plain.status_code == 415


async def test_state_changes_by_get_are_not_allowed(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    answer = await browser.page("/logout")
    assert answer.status_code == 405
    assert email in (await browser.page("/")).text


async def test_tokens_never_appear_in_urls_redirects_or_logs(
    browser: Browser, email: str, capfd: pytest.CaptureFixture[str]
) -> None:
    policy = cookie_policy(app_state(browser.app).settings)
    answers = [await browser.sign_up(email)]
    browser.http.cookies.delete(policy.access)
    answers.append(await browser.page("/"))  # a transparent refresh
    answers.append(await browser.submit("/logout", form_page="/"))
    answers.append(await browser.log_in(email))
    tokens = [browser.http.cookies.get(policy.access), browser.http.cookies.get(policy.refresh)]
    for answer in answers:
        location = answer.headers.get("location", "")
        assert "eyJ" not in location
        assert "token=" not in location
        assert "eyJ" not in str(answer.url)
    logged = capfd.readouterr()
    for token in tokens:
        assert token
        assert token not in logged.out + logged.err
    assert "eyJ" not in logged.out + logged.err
