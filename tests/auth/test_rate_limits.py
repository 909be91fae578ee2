"""Rate limits on login, sign-up and refresh: 429 with Retry-After, per key, and they recover."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from computebill.config import Settings
from computebill.devserver.scratch import delete_namespace
from computebill.state import app_state
from tests.auth.test_refresh import stored
from tests.support.http import Api, api_for


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Api]:
    namespace = f"{settings.redis_namespace}-limits-{secrets.token_hex(3)}"
    strict = settings.model_copy(
        update={
            "redis_namespace": namespace,
            "rate_limit_login_failures_per_account": "3/2second",
            "rate_limit_login_per_ip": "100/minute",
            "rate_limit_signup_per_ip": "4/minute",
            "rate_limit_refresh_per_session": "3/minute",
        }
    )
    async for api in api_for(strict):
        yield api
    await delete_namespace(settings.required_redis_url, namespace)


async def test_failed_logins_lock_one_account_briefly_not_others(limited: Api, email: str) -> None:
    await limited.sign_up(email)
    await limited.sign_up("other-" + email)
    for device in ("a", "b", "c"):  # from "different devices": the account is what counts
        assert (await limited.log_in(email, "wrong password!", device=device)).status_code == 401
    blocked = await limited.log_in(email)  # even the right password waits
    assert blocked.status_code == 429
    assert blocked.headers["content-type"] == "application/problem+json"
    assert 1 <= int(blocked.headers["retry-after"]) <= 2
    assert (await limited.log_in("other-" + email)).status_code == 200

    await asyncio.sleep(2.1)  # the window is two seconds: nothing is locked for good
    assert (await limited.log_in(email)).status_code == 200


async def test_failures_under_every_spelling_of_an_address_count_for_its_account(
    settings: Settings, email: str
) -> None:
    """Security checklist 2: full-width letters, capitals and an ideographic full stop reach the
    same account, so their failures count together; ten of them lock it (the default limit)."""
    namespace = f"{settings.redis_namespace}-spellings-{secrets.token_hex(3)}"
    default_limit = settings.model_copy(
        update={
            "redis_namespace": namespace,
            "rate_limit_login_failures_per_account": Settings.model_fields[
                "rate_limit_login_failures_per_account"
            ].default,
        }
    )
    local, _ = email.split("@")
    spellings = [
        email,
        email.upper(),
        f" {email} ",
        f"{local}@e\uff58ample.com",  # full-width x
        f"{local}@example\u3002com",  # ideographic full stop
        f"{local.upper()}@{''.join(chr(ord(c) + 0xFEE0) for c in 'EXAMPLE')}\u3002COM",
    ]
    async for api in api_for(default_limit):
        await api.sign_up(email)
        for attempt in range(10):
            spelling = spellings[attempt % len(spellings)]
            assert (await api.log_in(spelling, "wrong password!")).status_code == 401
        for spelling in spellings:  # every spelling, even with the right password, now waits
            assert (await api.log_in(spelling)).status_code == 429
    await delete_namespace(settings.required_redis_url, namespace)


async def test_sign_ups_are_limited_per_ip(limited: Api, email: str) -> None:
    for n in range(3):  # the fixture's first sign-ups may share the window; stay under it
        await limited.sign_up(f"{n}-{email}")
    answers = [
        await limited.http.post(
            "/api/v1/auth/signup",
            json={"email": f"x{n}-{email}", "password": "correct horse battery"},
        )
        for n in range(2)
    ]
    assert [a.status_code for a in answers] == [201, 429]
    assert int(answers[1].headers["retry-after"]) >= 1


async def test_refreshes_are_limited_per_token_family(limited: Api, email: str) -> None:
    token = (await limited.sign_up(email))["refresh_token"]
    statuses = []
    for _ in range(4):  # each refresh presents the newest token of the same session
        answer = await limited.refresh(token)
        statuses.append(answer.status_code)
        token = answer.json().get("refresh_token", token)
    assert statuses == [200, 200, 200, 429]
    refused = await stored(app_state(limited.app).settings, token)
    assert refused is not None
    assert refused.used_at is None  # the rotation was rolled back: the token is not spent
    other_session = (await limited.log_in(email)).json()["refresh_token"]
    assert (await limited.refresh(other_session)).status_code == 200
