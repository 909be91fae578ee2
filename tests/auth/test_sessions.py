"""Sessions a user can see and end, password change, account deletion, and user isolation."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select

from computebill.auth.models import AuthEvent, AuthSession, User
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from tests.support.http import Api
from tests.support.pages import browser_for


async def sessions_of(api: Api, access_token: str) -> list[dict[str, object]]:
    answer = await api.get("/api/v1/auth/sessions", access_token)
    assert answer.status_code == 200
    return list(answer.json()["sessions"])


async def test_revoking_a_session_kills_its_tokens_at_once(api: Api, email: str) -> None:
    laptop = await api.sign_up(email)
    phone = (await api.log_in(email, device="phone")).json()
    phone_session = next(s for s in await sessions_of(api, phone["access_token"]) if s["current"])

    answer = await api.call(
        "DELETE", f"/api/v1/auth/sessions/{phone_session['id']}", laptop["access_token"]
    )
    assert answer.status_code == 204
    assert (await api.get("/api/v1/me", phone["access_token"])).status_code == 401
    assert (await api.refresh(phone["refresh_token"])).status_code == 401
    assert [s["id"] for s in await sessions_of(api, laptop["access_token"])] != [
        phone_session["id"]
    ]
    assert len(await sessions_of(api, laptop["access_token"])) == 1


async def test_a_user_cannot_see_or_revoke_another_users_sessions(api: Api, email: str) -> None:
    alice = await api.sign_up(email)
    bob = await api.sign_up("bob-" + email)
    bob_session = (await sessions_of(api, bob["access_token"]))[0]
    assert all(s["id"] != bob_session["id"] for s in await sessions_of(api, alice["access_token"]))

    answer = await api.call(
        "DELETE", f"/api/v1/auth/sessions/{bob_session['id']}", alice["access_token"]
    )
    assert answer.status_code == 404  # the same answer as for an id that does not exist
    missing = await api.call(
        "DELETE", f"/api/v1/auth/sessions/{uuid.uuid4()}", alice["access_token"]
    )
    assert missing.status_code == 404
    assert answer.json() == missing.json()
    assert (await api.get("/api/v1/me", bob["access_token"])).status_code == 200


async def test_revoke_others_keeps_only_the_current_session(api: Api, email: str) -> None:
    first = await api.sign_up(email)
    others = [(await api.log_in(email, device=f"device-{n}")).json() for n in range(3)]
    answer = await api.call("POST", "/api/v1/auth/sessions/revoke-others", first["access_token"])
    assert answer.json() == {"revoked": 3}
    for other in others:
        assert (await api.get("/api/v1/me", other["access_token"])).status_code == 401
    assert [s["current"] for s in await sessions_of(api, first["access_token"])] == [True]


async def test_changing_the_password_ends_every_other_session(api: Api, email: str) -> None:
    here = await api.sign_up(email)
    elsewhere = (await api.log_in(email, device="phone")).json()
    wrong = await api.call(
        "POST",
        "/api/v1/me/password",
        here["access_token"],
        {"current_password": "not it at all", "new_password": "a brand new secret"},
    )
    assert wrong.status_code == 403
    changed = await api.call(
        "POST",
        "/api/v1/me/password",
        here["access_token"],
        {"current_password": "correct horse battery", "new_password": "a brand new secret"},
    )
    assert changed.status_code == 204
    assert (await api.get("/api/v1/me", here["access_token"])).status_code == 200
    assert (await api.get("/api/v1/me", elsewhere["access_token"])).status_code == 401
    assert (await api.log_in(email)).status_code == 401
    assert (await api.log_in(email, "a brand new secret")).status_code == 200


async def test_a_new_password_must_meet_the_policy(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    answer = await api.call(
        "POST",
        "/api/v1/me/password",
        pair["access_token"],
        {"current_password": "correct horse battery", "new_password": "1234567890"},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "body.new_password"


async def test_deleting_the_account_ends_everything_and_anonymises_it(
    api: Api, email: str, settings: Settings
) -> None:
    first = await api.sign_up(email)
    second = (await api.log_in(email, device="phone")).json()
    refused = await api.call("POST", "/api/v1/me/delete", first["access_token"], {"password": "no"})
    assert refused.status_code == 403
    deleted = await api.call(
        "POST", "/api/v1/me/delete", first["access_token"], {"password": "correct horse battery"}
    )
    assert deleted.status_code == 204
    for pair in (first, second):
        assert (await api.get("/api/v1/me", pair["access_token"])).status_code == 401
        assert (await api.refresh(pair["refresh_token"])).status_code == 401
    assert (await api.log_in(email)).status_code == 401

    engine = create_engine(settings)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        user = await db.get(User, uuid.UUID(first["user"]["id"]))
        assert user is not None
        events = list(await db.scalars(select(AuthEvent.type).where(AuthEvent.user_id == user.id)))
    await engine.dispose()
    assert user.deleted_at is not None
    assert user.password_hash is None
    assert email not in user.email
    assert events.count("account_deleted") == 2
    # The address is free again.
    assert (await api.sign_up(email))["user"]["id"] != first["user"]["id"]


async def test_the_audit_trail_records_auth_events_without_secrets(
    api: Api, email: str, settings: Settings
) -> None:
    pair = await api.sign_up(email)
    await api.log_in(email, "wrong password, surely")
    await api.refresh(pair["refresh_token"])
    await api.http.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    engine = create_engine(settings)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        events = list(
            await db.scalars(
                select(AuthEvent).where(AuthEvent.user_id == uuid.UUID(pair["user"]["id"]))
            )
        )
    await engine.dispose()
    assert [e.type for e in events] == [
        "signup",
        "email_verification_sent",
        "login_succeeded",
        "email_verified",
        "refresh",
        "logout",
    ]
    assert all(e.ip_address == "127.0.0.1" for e in events)


async def failed_logins_from(settings: Settings, user_agent: str) -> int:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            count = await db.scalar(
                select(func.count()).where(
                    AuthEvent.type == "login_failed", AuthEvent.user_agent == user_agent
                )
            )
    finally:
        await engine.dispose()
    return int(count or 0)


async def test_a_refused_login_keeps_its_audit_event(
    api: Api, email: str, settings: Settings
) -> None:
    await api.sign_up(email)
    device = f"device-{uuid.uuid4()}"
    answer = await api.log_in(email, "wrong password, surely", device=device)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json() == {
        "type": "https://computebill.dev/problems/invalid_credentials",
        "title": "Unauthorized",
        "status": 401,
        "detail": "The e-mail or password is wrong.",
        "code": "invalid_credentials",
    }
    assert await failed_logins_from(settings, device) == 1


async def test_a_refused_login_page_keeps_its_audit_event(settings: Settings, email: str) -> None:
    async for browser in browser_for(settings):
        await browser.sign_up(email)
        await browser.submit("/logout", form_page="/")
        device = f"browser-{uuid.uuid4()}"
        browser.http.headers["user-agent"] = device
        answer = await browser.log_in(email, "wrong password, surely")
        assert answer.status_code == 401
        assert "The e-mail or password is wrong." in answer.text  # the form, with the reason
    assert await failed_logins_from(settings, device) == 1


async def test_revoke_others_leaves_long_expired_sessions_alone(
    api: Api, email: str, settings: Settings
) -> None:
    """Only sessions that may still hold a live access token are locked, revoked and audited:
    one that expired a minute ago is, one that expired ten days ago is not."""
    here = await api.sign_up(email)
    await api.log_in(email, device="long-expired")  # idle-expires on day 14
    api.clock.advance(days=10)
    await api.log_in(email, device="just-expired")  # idle-expires on day 24
    here = (await api.refresh(here["refresh_token"])).json()
    api.clock.advance(days=10)
    here = (await api.refresh(here["refresh_token"])).json()
    await api.log_in(email, device="live")
    api.clock.advance(days=4, minutes=1)

    answer = await api.call("POST", "/api/v1/auth/sessions/revoke-others", here["access_token"])
    assert answer.json() == {"revoked": 2}

    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            others = list(
                await db.scalars(
                    select(AuthSession).where(
                        AuthSession.user_id == uuid.UUID(here["user"]["id"]),
                        AuthSession.user_agent != "python-httpx/" + httpx.__version__,
                    )
                )
            )
            audited = set(
                await db.scalars(
                    select(AuthEvent.session_id).where(AuthEvent.type == "session_revoked")
                )
            )
    finally:
        await engine.dispose()
    revoked = {s.user_agent: s.revoked_at is not None for s in others}
    assert revoked == {"long-expired": False, "just-expired": True, "live": True}
    assert {s.user_agent for s in others if s.id in audited} == {"just-expired", "live"}
