"""The failed-login limit must not lock the owner out (security checklist 2): ten failures from
anywhere pause new devices, while a device the account signed in from before (its device token
or cookie) still signs in with the right password, and the owner is e-mailed once per burst."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.config import Settings
from computebill.devserver.scratch import delete_namespace
from computebill.mail.models import OutboxEmail
from tests.support.http import Api, api_for
from tests.support.pages import Browser, browser_for

PASSWORD = "correct horse battery"
DEFAULT_LIMIT = Settings.model_fields["rate_limit_login_failures_per_account"].default
LIMIT = 10  # attempts in DEFAULT_LIMIT, "10/15minutes"


def _own_namespace(settings: Settings, name: str) -> Settings:
    """The default failed-login limit (the test settings' is generous), counted in a Redis
    namespace of its own."""
    assert f"{LIMIT}/15minutes" == DEFAULT_LIMIT
    namespace = f"{settings.redis_namespace}-{name}-{secrets.token_hex(3)}"
    return settings.model_copy(
        update={
            "redis_namespace": namespace,
            "rate_limit_login_failures_per_account": DEFAULT_LIMIT,
        }
    )


@pytest.fixture
async def api_with_own_limits(settings: Settings) -> AsyncIterator[Api]:
    own = _own_namespace(settings, "lockout")
    async for api in api_for(own):
        yield api
    await delete_namespace(settings.required_redis_url, own.redis_namespace)


async def _log_in(
    api: Api, email: str, password: str = PASSWORD, device_token: str | None = None
) -> httpx.Response:
    body = {"email": email, "password": password}
    if device_token is not None:
        body["device_token"] = device_token
    return await api.http.post("/api/v1/auth/login", json=body)


async def _attack(api: Api, email: str, attempts: int = LIMIT) -> None:
    for attempt in range(attempts):
        answer = await _log_in(api, email, f"guess number {attempt}")
        assert answer.status_code == 401, answer.text


async def _lockout_emails(engine: AsyncEngine, user_id: str) -> list[OutboxEmail]:
    async with AsyncSession(engine) as db:
        found = await db.scalars(
            select(OutboxEmail).where(
                OutboxEmail.dedupe_key.startswith(f"login_lockout:{user_id}:")
            )
        )
        return list(found)


async def test_an_attack_does_not_lock_out_the_owners_known_device(
    api_with_own_limits: Api, engine: AsyncEngine, email: str
) -> None:
    api = api_with_own_limits
    owner = await api.sign_up(email)
    device_token = owner["device_token"]
    assert device_token

    await _attack(api, email)
    # An unknown device is still locked, even with the right password.
    locked = await _log_in(api, email)
    assert locked.status_code == 429
    assert locked.headers["retry-after"]
    # The owner's device signs in, and gets a fresh device token.
    owner_login = await _log_in(api, email, device_token=device_token)
    assert owner_login.status_code == 200, owner_login.text
    assert owner_login.json()["device_token"]
    # A wrong password from the known device is still a wrong password.
    wrong = await _log_in(api, email, "not it at all", device_token=device_token)
    assert wrong.status_code == 401


async def test_a_device_token_is_good_only_for_its_own_account(
    api_with_own_limits: Api, email: str
) -> None:
    api = api_with_own_limits
    await api.sign_up(email)
    other = await api.sign_up("other-" + email)
    await _attack(api, email)
    for token in (other["device_token"], "forged.123.abc", other["device_token"][:-2] + "xx"):
        assert (await _log_in(api, email, device_token=token)).status_code == 429


async def test_the_owner_is_e_mailed_once_per_burst(
    api_with_own_limits: Api, engine: AsyncEngine, email: str
) -> None:
    api = api_with_own_limits
    owner = await api.sign_up(email)
    await _attack(api, email, LIMIT - 1)
    assert await _lockout_emails(engine, owner["user"]["id"]) == []
    await _attack(api, email, 1)  # the failure that trips the limit
    [warning] = await _lockout_emails(engine, owner["user"]["id"])
    assert warning.recipient == email
    assert f"{LIMIT} failed sign-in attempts" in warning.body
    assert "If it wasn't you" in warning.body
    # The attack goes on: refused before counting, and no second e-mail.
    for _ in range(5):
        assert (await _log_in(api, email, "still guessing")).status_code == 429
    assert len(await _lockout_emails(engine, owner["user"]["id"])) == 1


async def test_failures_from_the_known_device_count_under_the_device(
    api_with_own_limits: Api, email: str
) -> None:
    """A stolen device token is no way round the limit: its failures have a limit of their own."""
    api = api_with_own_limits
    owner = await api.sign_up(email)
    device_token = owner["device_token"]
    for attempt in range(LIMIT):
        wrong = await _log_in(api, email, f"typo {attempt}", device_token=device_token)
        assert wrong.status_code == 401
    assert (await _log_in(api, email, device_token=device_token)).status_code == 429
    # Those were not the account's failures: a new device is not locked by them.
    assert (await _log_in(api, email)).status_code == 200


@pytest.fixture
async def browser_with_own_limits(settings: Settings) -> AsyncIterator[Browser]:
    own = _own_namespace(settings, "lockout-pages")
    async for browser in browser_for(own):
        yield browser
    await delete_namespace(settings.required_redis_url, own.redis_namespace)


async def test_a_browser_that_signed_in_before_signs_in_during_an_attack(
    browser_with_own_limits: Browser, email: str
) -> None:
    browser = browser_with_own_limits
    await browser.sign_up(email)
    device_cookie = next(c for c in browser.http.cookies.jar if c.name == "cb_device")
    assert device_cookie.expires is not None
    assert (await browser.submit("/logout", form_page="/account")).status_code == 303

    for attempt in range(LIMIT):
        answer = await browser.http.post(
            "/api/v1/auth/login", json={"email": email, "password": f"guess {attempt}"}
        )
        assert answer.status_code == 401
    signed_in = await browser.log_in(email)
    assert signed_in.status_code == 303, signed_in.text

    browser.http.cookies.delete("cb_device")
    assert (await browser.submit("/logout", form_page="/account")).status_code == 303
    stranger = await browser.log_in(email)
    assert stranger.status_code == 429
    assert "Too many attempts" in stranger.text
