"""API keys: made and revoked only by a signed-in session, shown once and kept as an HMAC under
the pepper, refused at once when revoked or expired, limited to their scopes and to the JSON API,
rate limited per key, and their use recorded (docs/architecture.md §8)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.auth.models import ApiKey, AuthEvent
from computebill.config import Settings
from computebill.db import create_sessionmaker, unit_of_work
from computebill.devserver.scratch import delete_namespace
from computebill.state import app_state
from computebill.web.cookies import cookie_policy
from tests.apikeys.helpers import ALL_SCOPES, create_key, list_keys
from tests.instances.test_pay_as_you_go_api import H100, fund
from tests.support.admins import make_admin
from tests.support.http import Api, api_for
from tests.support.markup import error_beside, the
from tests.support.pages import PASSWORD, Browser


async def key_row(engine: AsyncEngine, key_id: str) -> ApiKey:
    async with unit_of_work(create_sessionmaker(engine)) as db:
        row = await db.get(ApiKey, uuid.UUID(key_id))
        assert row is not None
        db.expunge(row)
        return row


async def events_of(engine: AsyncEngine, key_id: str) -> list[str]:
    async with unit_of_work(create_sessionmaker(engine)) as db:
        types = await db.scalars(
            select(AuthEvent.type)
            .where(AuthEvent.api_key_id == uuid.UUID(key_id))
            .order_by(AuthEvent.id)
        )
        return list(types)


async def test_a_key_is_shown_once_and_kept_only_as_its_hmac(
    api: Api, email: str, engine: AsyncEngine, settings: Settings
) -> None:
    pair = await api.sign_up(email)
    made = await create_key(api, pair["access_token"], ["read"], name="  deploy bot ")
    secret = made["key"]
    assert secret.startswith("cb_live_")
    assert len(secret) > 40
    assert made["prefix"] == secret[len("cb_live_") :][:8]
    assert (made["name"], made["scopes"], made["last_used_at"]) == ("deploy bot", ["read"], None)

    listed = await list_keys(api, pair["access_token"])
    assert [key["id"] for key in listed] == [made["id"]]
    assert "key" not in listed[0]
    assert secret not in (await api.get("/api/v1/api-keys", pair["access_token"])).text

    row = await key_row(engine, made["id"])
    digest = hmac.new(settings.required_token_pepper, secret.encode(), hashlib.sha256).digest()
    assert row.key_hash == digest
    assert secret not in repr([getattr(row, c.key) for c in ApiKey.__table__.columns])

    me = await api.get("/api/v1/me", secret)
    assert me.status_code == 200, me.text
    assert me.json()["email"] == email
    assert await events_of(engine, made["id"]) == ["api_key_created", "api_key_new_ip"]


async def test_last_use_and_address_are_written_at_most_once_a_minute(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    made = await create_key(api, pair["access_token"])
    assert (await api.get("/api/v1/me", made["key"])).status_code == 200
    first = (await list_keys(api, pair["access_token"]))[0]
    assert first["last_used_ip"] == "127.0.0.1"
    assert first["last_used_at"] is not None

    api.clock.advance(seconds=30)
    assert (await api.get("/api/v1/me", made["key"])).status_code == 200
    assert (await key_row(engine, made["id"])).last_used_at == api.clock.now() - timedelta(
        seconds=30
    )
    api.clock.advance(seconds=31)
    assert (await api.get("/api/v1/me", made["key"])).status_code == 200
    assert (await key_row(engine, made["id"])).last_used_at == api.clock.now()

    moved = await api.http.get(
        "/api/v1/me",
        headers={"authorization": f"Bearer {made['key']}", "x-forwarded-for": "203.0.113.9"},
    )
    assert moved.status_code == 200  # no proxy is trusted here: the address is still the peer's
    assert await events_of(engine, made["id"]) == ["api_key_created", "api_key_new_ip"]


async def test_a_revoked_key_is_refused_on_its_next_request(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    made = await create_key(api, pair["access_token"])
    assert (await api.get("/api/v1/instances", made["key"])).status_code == 200

    revoked = await api.call("DELETE", f"/api/v1/api-keys/{made['id']}", pair["access_token"])
    assert revoked.status_code == 204
    refused = await api.get("/api/v1/instances", made["key"])
    assert refused.status_code == 401
    assert refused.json()["code"] == "not_authenticated"
    assert await list_keys(api, pair["access_token"]) == []
    assert "api_key_revoked" in await events_of(engine, made["id"])
    again = await api.call("DELETE", f"/api/v1/api-keys/{made['id']}", pair["access_token"])
    assert again.status_code == 404


async def test_another_users_key_cannot_be_seen_or_revoked(api: Api, email: str) -> None:
    alice = await api.sign_up(email)
    bob = await api.sign_up("bob-" + email)
    bobs = await create_key(api, bob["access_token"])
    assert await list_keys(api, alice["access_token"]) == []
    answer = await api.call("DELETE", f"/api/v1/api-keys/{bobs['id']}", alice["access_token"])
    missing = await api.call("DELETE", f"/api/v1/api-keys/{uuid.uuid4()}", alice["access_token"])
    assert answer.status_code == missing.status_code == 404
    assert answer.json() == missing.json()
    assert (await api.get("/api/v1/me", bobs["key"])).json()["email"] == "bob-" + email


async def test_an_expired_key_is_refused(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    expires = (api.clock.now() + timedelta(hours=1)).isoformat()
    made = await create_key(api, pair["access_token"], expires_at=expires)
    assert (await api.get("/api/v1/me", made["key"])).status_code == 200
    api.clock.advance(hours=1, seconds=1)
    assert (await api.get("/api/v1/me", made["key"])).status_code == 401


@pytest.mark.parametrize(
    ("expires_at", "code"),
    [
        (timedelta(minutes=-1), "invalid_expiry"),
        (timedelta(days=366), "invalid_expiry"),
        ("2030-01-01T00:00:00", "validation_error"),  # no offset: not a moment
    ],
)
async def test_an_expiry_is_in_the_future_and_within_a_year(
    api: Api, email: str, expires_at: timedelta | str, code: str
) -> None:
    pair = await api.sign_up(email)
    when = (
        (api.clock.now() + expires_at).isoformat()
        if isinstance(expires_at, timedelta)
        else expires_at
    )
    body = {"name": "ci", "scopes": ["read"], "expires_at": when}
    answer = await api.call("POST", "/api/v1/api-keys", pair["access_token"], body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == code


async def test_a_key_does_only_what_its_scopes_allow(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    reader = await create_key(api, pair["access_token"], ["read"])
    assert (await api.get("/api/v1/credits", reader["key"])).status_code == 200
    refused = await api.call("POST", "/api/v1/instances", reader["key"], H100 | {"max_hours": 1})
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
    assert 'scope="instances:write"' in refused.headers["www-authenticate"]
    writer = await create_key(api, pair["access_token"], ["instances:write"])
    assert (await api.get("/api/v1/credits", writer["key"])).json()["code"] == "insufficient_scope"


async def test_a_key_cannot_manage_keys_the_account_or_admin_routes(
    api: Api, email: str, settings: Settings
) -> None:
    pair = await api.sign_up(email)
    await make_admin(
        settings, email, http=api.http, access_token=pair["access_token"], at=api.clock.now()
    )
    made = await create_key(api, pair["access_token"])
    for method, path, body in (
        ("POST", "/api/v1/api-keys", {"name": "more", "scopes": ALL_SCOPES}),
        ("GET", "/api/v1/api-keys", None),
        ("DELETE", f"/api/v1/api-keys/{made['id']}", None),
        ("POST", "/api/v1/me/password", {"current_password": "x", "new_password": "y" * 12}),
        ("POST", "/api/v1/me/delete", {"password": "correct horse battery"}),
        ("GET", "/api/v1/auth/sessions", None),
        ("POST", "/api/v1/auth/sessions/revoke-others", None),
        ("GET", "/api/v1/admin/jobs", None),
        ("GET", "/api/v1/admin/outbox", None),
        ("GET", "/api/v1/admin/audit", None),
        ("POST", "/api/v1/auth/reauthenticate", {"password": "correct horse battery"}),
        ("POST", "/api/v1/me/2fa/setup", None),
    ):
        answer = await api.call(method, path, made["key"], body)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["code"] == "api_key_not_allowed", path
    assert [key["id"] for key in await list_keys(api, pair["access_token"])] == [made["id"]]
    assert (await api.get("/api/v1/admin/outbox", pair["access_token"])).status_code == 200


async def test_a_key_on_a_page_is_a_signed_out_visitor(
    api: Api, browser: Browser, email: str
) -> None:
    pair = await api.sign_up(email)
    made = await create_key(api, pair["access_token"])
    bearer = {"authorization": f"Bearer {made['key']}"}
    for path in ("/account/api-keys", "/account", "/dashboard"):
        answer = await browser.http.get(path, headers=bearer)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login")
    home = await browser.http.get("/", headers=bearer)
    assert email not in home.text
    assert "Log in" in home.text
    # Nor as the access cookie a browser holds.
    browser.http.cookies.set(cookie_policy(app_state(api.app).settings).access, made["key"])
    assert (await browser.http.get("/account/api-keys")).status_code == 303


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Api]:
    namespace = f"{settings.redis_namespace}-keys-{secrets.token_hex(3)}"
    strict = settings.model_copy(
        update={"redis_namespace": namespace, "api_key_rate_limit_per_minute": 3}
    )
    async for api in api_for(strict):
        yield api
    await delete_namespace(settings.required_redis_url, namespace)


async def test_each_key_has_its_own_rate_limit(limited: Api, email: str) -> None:
    pair = await limited.sign_up(email)
    busy = await create_key(limited, pair["access_token"])
    quiet = await create_key(limited, pair["access_token"])
    for _ in range(3):
        assert (await limited.get("/api/v1/me", busy["key"])).status_code == 200
    refused = await limited.get("/api/v1/me", busy["key"])
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert (await limited.get("/api/v1/me", quiet["key"])).status_code == 200
    assert (await limited.get("/api/v1/me", pair["access_token"])).status_code == 200


async def test_an_instances_write_key_launches_and_terminates_an_instance(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    await fund(engine, pair["user"]["id"], 100_000_000)
    launcher = await create_key(api, pair["access_token"], ["instances:write"])
    reader = await create_key(api, pair["access_token"], ["read"])

    launched = await api.call("POST", "/api/v1/instances", launcher["key"], H100 | {"max_hours": 2})
    assert launched.status_code == 201, launched.text
    instance = launched.json()
    assert instance["billing"] == "pay_as_you_go"
    listed = (await api.get("/api/v1/instances", reader["key"])).json()["instances"]
    assert [i["id"] for i in listed] == [instance["id"]]

    path = f"/api/v1/instances/{instance['id']}/terminate"
    assert (await api.call("POST", path, reader["key"])).status_code == 403
    ended = await api.call("POST", path, launcher["key"])
    assert ended.status_code in {200, 202}, ended.text
    shown = await api.get(f"/api/v1/instances/{instance['id']}", pair["access_token"])
    assert shown.json()["status"] in {"stopping", "terminated"}


async def test_an_account_has_a_bounded_number_of_keys(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    for _ in range(50):
        await create_key(api, pair["access_token"], ["read"])
    refused = await api.call(
        "POST", "/api/v1/api-keys", pair["access_token"], {"name": "one more", "scopes": ["read"]}
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "too_many_api_keys"


async def test_the_page_makes_shows_once_lists_and_revokes_keys(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    await browser.sign_up(email)
    page = await browser.page("/account/api-keys")
    assert page.status_code == 200
    assert "data-api-keys-empty" in page.text
    assert "copy" in re.findall(r'<script src="([^"]+)"', page.text)[-1]

    made = await browser.submit(
        "/account/api-keys",
        {"name": "nightly", "scopes": ["read", "billing:write"], "expires_in_days": "30"},
    )
    assert made.status_code == 200, made.text
    secret = re.search(r"data-api-key-secret>(cb_live_[\w-]+)<", made.text)
    assert secret
    assert 'data-copy="new-api-key"' in made.text
    listed = await browser.page("/account/api-keys")
    assert secret.group(1) not in listed.text  # shown once
    assert f"cb_live_{secret.group(1)[8:16]}" in listed.text
    assert "read, billing:write" in listed.text
    key_id = re.search(r'data-api-key="([0-9a-f-]+)"', listed.text)
    assert key_id
    assert (await key_row(engine, key_id.group(1))).expires_at is not None

    none = await browser.submit("/account/api-keys", {"name": "nothing"})
    assert none.status_code == 422
    assert "Choose at least one scope." in none.text

    revoked = await browser.submit(
        f"/account/api-keys/{key_id.group(1)}/revoke", form_page="/account/api-keys"
    )
    assert revoked.status_code == 303
    assert (await key_row(engine, key_id.group(1))).revoked_at is not None
    assert "data-api-keys-empty" in (await browser.page("/account/api-keys")).text


async def test_making_a_key_needs_a_recent_login(
    api: Api, email: str, settings: Settings, engine: AsyncEngine
) -> None:
    """A stolen session (SECURITY-CHECKLIST 9) cannot mint itself a long-lived key alone: with
    a login older than REAUTHENTICATE_AFTER_SECONDS, 403 `reauthentication_required` until the
    password is entered again with `POST /auth/reauthenticate`."""
    pair = await api.sign_up(email)
    token = pair["access_token"]
    api.clock.advance(seconds=settings.reauthenticate_after_seconds + 1)
    body = {"name": "stolen", "scopes": ALL_SCOPES}

    stale = await api.call("POST", "/api/v1/api-keys", token, body)

    assert stale.status_code == 403
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["code"] == "reauthentication_required"
    assert await list_keys(api, token) == []
    async with unit_of_work(create_sessionmaker(engine)) as db:
        made = await db.scalars(select(ApiKey.id).where(ApiKey.name == "stolen"))
        assert list(made) == []
    again = await api.call("POST", "/api/v1/auth/reauthenticate", token, {"password": PASSWORD})
    assert again.status_code == 204
    assert (await create_key(api, token))["key"].startswith("cb_live_")


async def test_the_page_asks_for_the_password_to_make_a_key_after_an_old_login(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    fresh = await browser.page("/account/api-keys")
    assert "data-recent-login-field" not in fresh.text
    browser.clock.advance(seconds=browser.settings.reauthenticate_after_seconds + 60)
    assert the((await browser.page("/account/api-keys")).text, "data-recent-login-field")
    fields = {"name": "nightly", "scopes": ["read"], "expires_in_days": "30"}

    stale = await browser.submit("/account/api-keys", fields)

    assert stale.status_code == 403
    assert error_beside(stale.text, "password").startswith("Your login is not recent enough")
    assert "data-api-key-secret" not in stale.text
    assert "data-api-keys-empty" in stale.text
    wrong = await browser.submit("/account/api-keys", fields | {"password": "not my password"})
    assert wrong.status_code == 403
    assert error_beside(wrong.text, "password") == "The current password is wrong."

    made = await browser.submit("/account/api-keys", fields | {"password": PASSWORD})

    assert made.status_code == 200, made.text
    assert "data-api-key-secret" in made.text
    assert "data-recent-login-field" not in made.text  # the password made the login recent
