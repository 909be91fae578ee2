"""Refresh-token rotation, the grace window, reuse detection and session expiry."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from sqlalchemy import func, select

from computebill.auth.models import AuthEvent, AuthSession, RefreshToken
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from tests.support.http import Api
from tests.support.settings import TEST_TOKEN_PEPPER


async def stored(settings: Settings, token: str) -> RefreshToken | None:
    digest = hmac.new(TEST_TOKEN_PEPPER.encode(), token.encode(), hashlib.sha256).digest()
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            return await db.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))
    finally:
        await engine.dispose()


async def children_of(settings: Settings, token: str) -> int:
    parent = await stored(settings, token)
    assert parent is not None
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            count = await db.scalar(select(func.count()).where(RefreshToken.parent_id == parent.id))
            return int(count or 0)
    finally:
        await engine.dispose()


async def test_refresh_rotates_and_stores_only_a_keyed_digest(
    api: Api, email: str, settings: Settings
) -> None:
    t1 = (await api.sign_up(email))["refresh_token"]
    answer = await api.refresh(t1)
    assert answer.status_code == 200
    t2 = answer.json()["refresh_token"]
    assert t2 != t1
    assert len(t2) >= 43  # 256 bits, base64url
    row = await stored(settings, t2)
    assert row is not None
    assert t2.encode() not in row.token_hash
    assert len(row.token_hash) == 32
    spent = await stored(settings, t1)
    assert spent is not None
    assert spent.used_at is not None
    assert (await api.get("/api/v1/me", answer.json()["access_token"])).status_code == 200


async def test_within_the_grace_window_the_parent_gets_the_same_child(api: Api, email: str) -> None:
    t1 = (await api.sign_up(email))["refresh_token"]
    t2 = (await api.refresh(t1)).json()["refresh_token"]
    api.clock.advance(seconds=19)
    again = await api.refresh(t1)
    assert again.status_code == 200
    assert again.json()["refresh_token"] == t2
    assert (await api.refresh(t2)).status_code == 200


async def test_after_the_grace_window_reuse_ends_the_session(api: Api, email: str) -> None:
    signup = await api.sign_up(email)
    other_device = (await api.log_in(email, device="phone")).json()
    t1 = signup["refresh_token"]
    rotated = (await api.refresh(t1)).json()
    api.clock.advance(seconds=21)

    reuse = await api.refresh(t1)
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "refresh_token_reused"
    # The thief's and the owner's newer tokens are dead too, at once.
    assert (await api.refresh(rotated["refresh_token"])).status_code == 401
    assert (await api.get("/api/v1/me", rotated["access_token"])).status_code == 401
    # The user's other device is untouched.
    assert (await api.get("/api/v1/me", other_device["access_token"])).status_code == 200
    assert (await api.refresh(other_device["refresh_token"])).status_code == 200


async def test_an_older_ancestor_is_reuse_even_inside_the_window(api: Api, email: str) -> None:
    t0 = (await api.sign_up(email))["refresh_token"]
    t1 = (await api.refresh(t0)).json()["refresh_token"]
    t2 = (await api.refresh(t1)).json()["refresh_token"]
    assert (await api.refresh(t0)).status_code == 401  # t0's child t1 is already spent
    assert (await api.refresh(t2)).status_code == 401


async def test_twenty_concurrent_refreshes_get_one_and_the_same_child(
    api: Api, email: str, settings: Settings
) -> None:
    t1 = (await api.sign_up(email))["refresh_token"]
    answers = await asyncio.gather(*(api.refresh(t1) for _ in range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    assert len({a.json()["refresh_token"] for a in answers}) == 1
    assert await children_of(settings, t1) == 1


async def test_an_unknown_refresh_token_is_refused(api: Api) -> None:
    answer = await api.refresh("x" * 43)
    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_refresh_token"


async def test_past_the_absolute_expiry_the_session_is_over(api: Api, email: str) -> None:
    token = (await api.sign_up(email))["refresh_token"]
    for days in (13, 13, 13, 13, 7):  # rotations extend the idle expiry, never the absolute one
        api.clock.advance(days=days)
        answer = await api.refresh(token)
        assert answer.status_code == 200
        token = answer.json()["refresh_token"]
    api.clock.advance(days=1, hours=12)  # 60.5 days after login, 1.5 days after the last use
    assert (await api.refresh(token)).status_code == 401


async def test_an_idle_session_expires(api: Api, email: str) -> None:
    token = (await api.sign_up(email))["refresh_token"]
    api.clock.advance(days=14, seconds=1)
    assert (await api.refresh(token)).status_code == 401


async def test_a_refused_refresh_does_not_spend_the_token(
    api: Api, email: str, settings: Settings
) -> None:
    token = (await api.sign_up(email))["refresh_token"]
    api.clock.advance(days=15)  # idle-expired: the spend is rolled back with the refusal
    assert (await api.refresh(token)).status_code == 401
    row = await stored(settings, token)
    assert row is not None
    assert row.used_at is None


async def test_logout_ends_the_session_and_is_idempotent(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    other = (await api.log_in(email, device="phone")).json()
    for _ in range(2):
        answer = await api.http.post(
            "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}
        )
        assert answer.status_code == 204
    assert (await api.get("/api/v1/me", pair["access_token"])).status_code == 401
    assert (await api.refresh(pair["refresh_token"])).status_code == 401
    assert (await api.get("/api/v1/me", other["access_token"])).status_code == 200


async def test_sessions_rows_keep_device_and_expiry(
    api: Api, email: str, settings: Settings
) -> None:
    pair = await api.sign_up(email)
    sessions = (await api.get("/api/v1/auth/sessions", pair["access_token"])).json()["sessions"]
    engine = create_engine(settings)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        row = await db.get(AuthSession, sessions[0]["id"])
    await engine.dispose()
    assert row is not None
    assert (row.absolute_expires_at - row.created_at).days in (59, 60)
    assert row.ip_address == "127.0.0.1"


async def test_reuse_commits_the_revocation_and_its_audit_event(
    api: Api, email: str, settings: Settings
) -> None:
    t1 = (await api.sign_up(email))["refresh_token"]
    await api.refresh(t1)
    api.clock.advance(seconds=21)
    reuse = await api.refresh(t1)
    assert reuse.status_code == 401
    assert reuse.json()["detail"] == (
        "This refresh token was already used; the session has been ended."
    )
    row = await stored(settings, t1)
    assert row is not None
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            family = await db.get(AuthSession, row.session_id)
            events = list(
                await db.scalars(
                    select(AuthEvent.type).where(AuthEvent.session_id == row.session_id)
                )
            )
    finally:
        await engine.dispose()
    assert family is not None
    assert family.revoked_at is not None
    assert family.revoked_reason == "refresh_token_reuse"
    assert events.count("refresh_token_reuse") == 1
