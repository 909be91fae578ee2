"""Add to cart while signed out: the configuration is checked, the visitor is sent to log in (or
sign up) with the reason said, and once signed in (two-factor login included) it is in the cart
without another press, the once. Only the signed cookie that this browser's own add set adds
anything: a link alone, a changed cookie or an old one adds nothing."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from computebill.config import Settings
from computebill.web.cookies import cookie_policy
from tests.auth.test_two_factor_pages import CHALLENGE_INPUT, turn_on_two_factor_on_the_page
from tests.cart.test_cart_pages import CONFIGURATOR, H100, add, htmx_post, lines
from tests.support.catalog import activate, admin_change
from tests.support.markup import elements, the
from tests.support.pages import PASSWORD, Browser

PENDING_LOGIN = "/login?next=/cart/pending"
NOTHING_WAITING = "/cart?refused=pending-none"
WHY = "add 2 × NVIDIA H100 SXM to your cart"


async def follow(browser: Browser, answer: httpx.Response) -> tuple[list[str], httpx.Response]:
    """The redirects a browser follows from `answer`, and the page it lands on."""
    path: list[str] = []
    while answer.status_code == 303:
        path.append(answer.headers["location"])
        answer = await browser.page(answer.headers["location"])
    return path, answer


def intent_cookie(browser: Browser) -> str | None:
    return browser.http.cookies.get(cookie_policy(browser.settings).intent)


def plant_intent(browser: Browser, value: str) -> None:
    """Put a cookie value back in the jar, as a browser that kept (or changed) it would."""
    name = cookie_policy(browser.settings).intent
    for cookie in list(browser.http.cookies.jar):
        if cookie.name == name:
            browser.http.cookies.delete(name, domain=cookie.domain)
    browser.http.cookies.set(name, value, domain="testserver.local")


async def signed_up_then_out(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    assert (await browser.submit("/logout", form_page="/")).status_code == 303


async def log_in_to_pending(browser: Browser, email: str) -> httpx.Response:
    return await browser.submit(
        "/login",
        {"email": email, "password": PASSWORD, "next": "/cart/pending"},
        form_page=PENDING_LOGIN,
    )


async def test_a_signed_out_add_asks_to_log_in_and_says_what_for(browser: Browser) -> None:
    answer = await add(browser)
    assert answer.status_code == 303
    assert answer.headers["location"] == PENDING_LOGIN
    assert intent_cookie(browser)

    login = (await browser.page(PENDING_LOGIN)).text
    assert the(login, "data-login-reason").text == f"Log in to {WHY}."
    # The link to sign up keeps the item; the sign-up page says the same.
    assert 'href="/signup?next=/cart/pending"' in login
    signup = (await browser.page("/signup?next=/cart/pending")).text
    assert the(signup, "data-login-reason").text == f"Create an account to {WHY}."
    # A login for somewhere else does not claim to add anything.
    assert elements((await browser.page("/login?next=/billing")).text, "data-login-reason") == []

    # With htmx, the same: the browser is sent to the login page.
    await browser.page(CONFIGURATOR)
    inline = await htmx_post(browser, "/cart/items", H100 | {"gpu_count": 4})
    assert inline.status_code == 204
    assert inline.headers["hx-redirect"] == PENDING_LOGIN
    login = (await browser.page(PENDING_LOGIN)).text
    assert the(login, "data-login-reason").text == "Log in to add 4 × NVIDIA H100 SXM to your cart."


async def test_a_forged_add_keeps_nothing(browser: Browser) -> None:
    """A post from another site, or without this browser's CSRF token, is refused before the
    cookie that would add it is set."""
    await browser.page(CONFIGURATOR)
    forged = await browser.http.post("/cart/items", data=H100)
    assert forged.status_code == 403
    cross_site = await browser.http.post(
        "/cart/items",
        data=H100 | {"csrf_token": browser.csrf_token},
        headers={"sec-fetch-site": "cross-site"},
    )
    assert cross_site.status_code == 403
    assert intent_cookie(browser) is None


async def test_an_invalid_configuration_is_refused_before_any_login(browser: Browser) -> None:
    refused = await add(browser, H100 | {"hours": 100_000})
    assert refused.status_code == 422
    assert "That configuration was not added" in refused.text
    assert "hours" in refused.text
    assert intent_cookie(browser) is None

    unknown_image = await add(browser, H100 | {"image": "no-such-image"})
    assert unknown_image.status_code == 422
    assert intent_cookie(browser) is None

    inline = await htmx_post(browser, "/cart/items", H100 | {"vcpus": 7})
    assert inline.status_code == 200  # htmx swaps it in beside the button
    assert "data-add-error" in inline.text
    assert "hx-redirect" not in inline.headers
    assert intent_cookie(browser) is None


async def test_after_logging_in_the_item_is_in_the_cart_once(browser: Browser, email: str) -> None:
    await signed_up_then_out(browser, email)
    await add(browser)
    kept = intent_cookie(browser)
    assert kept

    path, cart = await follow(browser, await log_in_to_pending(browser, email))
    assert path[0] == "/cart/pending"
    assert urlsplit(path[-1]).path == "/cart"
    assert cart.status_code == 200
    assert the(cart.text, "data-cart-notice").text == "Added 2 × NVIDIA H100 SXM to your cart."
    [line] = lines(cart.text)
    assert the(line, "data-line-description").text.startswith("2 × NVIDIA H100 SXM · 24 vCPUs")
    assert intent_cookie(browser) is None  # consumed

    # Reloading adds nothing; nor does the same cookie presented again.
    for _ in range(2):
        await browser.page(path[-1])
        plant_intent(browser, kept)
        again = await browser.page("/cart/pending")
        assert again.headers["location"] == NOTHING_WAITING
    [line] = lines((await browser.page("/cart")).text)
    assert 'value="1"' in line


async def test_after_signing_up_unverified_the_item_is_in_the_cart(
    browser: Browser, email: str
) -> None:
    await add(browser)
    signed_up = await browser.submit(
        "/signup",
        {"email": email, "password": PASSWORD, "next": "/cart/pending"},
        form_page="/signup?next=/cart/pending",
    )
    assert signed_up.headers["location"] == "/cart/pending"
    _, cart = await follow(browser, signed_up)
    assert "data-unverified-banner" in cart.text  # the address is not verified yet
    assert the(cart.text, "data-cart-notice").text == "Added 2 × NVIDIA H100 SXM to your cart."
    assert len(lines(cart.text)) == 1


async def test_after_a_two_factor_login_the_item_is_in_the_cart(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    totp, _ = await turn_on_two_factor_on_the_page(browser)
    assert (await browser.submit("/logout", form_page="/")).status_code == 303
    await add(browser)

    code_page = await log_in_to_pending(browser, email)
    assert code_page.status_code == 200
    assert WHY in the(code_page.text, "data-login-reason").text
    challenge = CHALLENGE_INPUT.search(code_page.text)
    assert challenge
    browser.clock.advance(seconds=30)
    signed_in = await browser.submit(
        "/login/code",
        {
            "challenge": challenge.group(1),
            "code": totp.at(browser.clock.now()),
            "next": "/cart/pending",
        },
        form_page=PENDING_LOGIN,
    )
    assert signed_in.headers["location"] == "/cart/pending"
    _, cart = await follow(browser, signed_in)
    assert len(lines(cart.text)) == 1


async def test_a_link_alone_adds_nothing(browser: Browser, email: str) -> None:
    """Someone else's link to the landing page, or a pay-as-you-go login's cookie, puts nothing
    in the cart: only this browser's own signed-out add does."""
    await browser.sign_up(email)
    answer = await browser.page("/cart/pending?gpu=nvidia-h100&gpu_count=8")
    assert answer.headers["location"] == NOTHING_WAITING
    assert (await browser.submit("/logout", form_page="/")).status_code == 303
    await browser.submit("/instances/pay-as-you-go", H100, form_page=CONFIGURATOR)
    assert intent_cookie(browser)
    await browser.log_in(email)
    assert (await browser.page("/cart/pending")).headers["location"] == NOTHING_WAITING
    assert lines((await browser.page("/cart")).text) == []


def _changed(value: str, **details: Any) -> str:
    """The cookie with its item changed and its signature kept."""
    encoded, issued, mac = value.rsplit(".", 2)
    body = json.loads(base64.urlsafe_b64decode(encoded))
    body["d"] |= details
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    return f"{forged}.{issued}.{mac}"


async def test_a_changed_cookie_is_refused(browser: Browser, email: str) -> None:
    await signed_up_then_out(browser, email)
    await add(browser)
    kept = intent_cookie(browser)
    assert kept
    plant_intent(browser, _changed(kept, gpu_count=8))
    assert elements((await browser.page(PENDING_LOGIN)).text, "data-login-reason") == []
    _, cart = await follow(browser, await log_in_to_pending(browser, email))
    assert lines(cart.text) == []
    assert intent_cookie(browser) is None  # the bad cookie is gone too


async def test_an_item_left_over_half_an_hour_is_dropped(browser: Browser, email: str) -> None:
    await signed_up_then_out(browser, email)
    await add(browser)
    browser.clock.advance(seconds=31 * 60)
    assert elements((await browser.page(PENDING_LOGIN)).text, "data-login-reason") == []
    _, cart = await follow(browser, await log_in_to_pending(browser, email))
    assert lines(cart.text) == []
    assert the(cart.text, "data-cart-error").text == (
        "Nothing was waiting to be added: what you choose before logging in is kept for 30"
        " minutes and added once. Choose it again from the catalog."
    )


async def test_an_item_no_longer_offered_lands_on_the_cart_with_the_reason(
    browser: Browser, email: str, settings: Settings
) -> None:
    await signed_up_then_out(browser, email)
    await add(browser, H100 | {"gpu": "amd-mi250x"})
    await admin_change(settings, browser.app, activate("amd-mi250x", False))
    try:
        path, cart = await follow(browser, await log_in_to_pending(browser, email))
    finally:
        await admin_change(settings, browser.app, activate("amd-mi250x", True))
    assert urlsplit(path[-1]).path == "/cart"
    assert cart.status_code == 200
    assert "no longer offered" in the(cart.text, "data-cart-error").text
    assert lines(cart.text) == []
