"""Sign-up, login, the password policy, /me."""

from __future__ import annotations

import bcrypt
import pytest
from sqlalchemy import func, select

from computebill.auth.models import AuthEvent, User
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from tests.support.http import Api, api_for

PROBLEM = "application/problem+json"


async def test_sign_up_returns_a_token_pair_and_a_normalised_email(api: Api, email: str) -> None:
    pair = await api.sign_up("  " + email.upper() + " ")
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == 600
    assert pair["user"]["email"] == email
    me = await api.get("/api/v1/me", pair["access_token"])
    assert me.status_code == 200
    assert me.json() == {
        "id": pair["user"]["id"],
        "email": email,
        "name": "Test",
        "two_factor_enabled": False,
        "email_verified": True,
    }


async def test_the_name_is_changed_with_patch_me_and_recorded(
    api: Api, email: str, settings: Settings
) -> None:
    pair = await api.sign_up(email)
    token = pair["access_token"]

    renamed = await api.call("PATCH", "/api/v1/me", token, {"name": "  Grace Hopper "})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Grace Hopper"
    assert (await api.get("/api/v1/me", token)).json()["name"] == "Grace Hopper"

    refused = await api.call("PATCH", "/api/v1/me", token, {"name": "Grace\u0007"})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["code"] == "invalid_name"
    missing = await api.call("PATCH", "/api/v1/me", token, {})
    assert missing.status_code == 422
    assert (await api.get("/api/v1/me", token)).json()["name"] == "Grace Hopper"

    cleared = await api.call("PATCH", "/api/v1/me", token, {"name": None})
    assert cleared.json()["name"] is None

    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            renames = await db.scalar(
                select(func.count())
                .select_from(AuthEvent)
                .where(AuthEvent.user_id == pair["user"]["id"], AuthEvent.type == "name_changed")
            )
    finally:
        await engine.dispose()
    assert renames == 2


async def test_the_same_email_in_another_case_is_taken(api: Api, email: str) -> None:
    await api.sign_up(email)
    again = await api.http.post(
        "/api/v1/auth/signup", json={"email": email.upper(), "password": "another good one!"}
    )
    assert again.status_code == 409
    assert again.json()["code"] == "email_taken"


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 10 characters"),
        ("password123", "most common passwords"),
        ("é" * 37, "at most 72 bytes"),  # 37 characters, 74 bytes: never silently truncated
    ],
)
async def test_weak_passwords_are_refused_with_the_field_named(
    api: Api, email: str, password: str, message: str
) -> None:
    answer = await api.http.post("/api/v1/auth/signup", json={"email": email, "password": password})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    error = answer.json()["errors"][0]
    assert error["field"] == "body.password"
    assert message in error["message"]


async def test_the_password_may_not_be_the_email(api: Api) -> None:
    address = "samesame@example.com"
    answer = await api.http.post(
        "/api/v1/auth/signup", json={"email": address, "password": address.upper()}
    )
    assert answer.status_code == 422
    assert "e-mail" in answer.json()["errors"][0]["message"]


async def test_a_huge_password_is_refused_before_hashing(api: Api, email: str) -> None:
    answer = await api.http.post(
        "/api/v1/auth/signup", json={"email": email, "password": "x" * 1_000_000}
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["type"] == "string_too_long"


async def test_extra_fields_like_is_admin_are_refused(api: Api, email: str) -> None:
    answer = await api.http.post(
        "/api/v1/auth/signup",
        json={"email": email, "password": "correct horse battery", "is_admin": True},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "body.is_admin"


async def test_an_invalid_email_is_refused(api: Api) -> None:
    answer = await api.http.post(
        "/api/v1/auth/signup", json={"email": "not-an-address", "password": "correct horse battery"}
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_email"


async def test_login_answers_the_same_for_a_wrong_password_and_an_unknown_email(
    api: Api, email: str
) -> None:
    await api.sign_up(email)
    wrong_password = await api.log_in(email, "not the password at all")
    unknown_email = await api.log_in("nobody-" + email, "not the password at all")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()


async def test_login_opens_a_new_session_each_time(api: Api, email: str) -> None:
    await api.sign_up(email)
    first = (await api.log_in(email, device="laptop")).json()
    second = (await api.log_in(email.upper(), device="phone")).json()
    assert first["refresh_token"] != second["refresh_token"]
    sessions = (await api.get("/api/v1/auth/sessions", second["access_token"])).json()["sessions"]
    assert len(sessions) == 3  # sign-up, laptop, phone
    assert [s["user_agent"] for s in sessions if s["current"]] == ["phone"]


async def test_passwords_are_stored_as_bcrypt_at_the_configured_cost(
    settings: Settings, email: str
) -> None:
    production_cost = settings.model_copy(update={"bcrypt_rounds": 12})
    async for api in api_for(production_cost):
        await api.sign_up(email, "a long enough secret")
    engine = create_engine(settings)
    async with unit_of_work(create_sessionmaker(engine)) as db:
        user = await db.scalar(select(User).where(User.email == email))
        assert user is not None
        events = list(await db.scalars(select(AuthEvent.type).where(AuthEvent.user_id == user.id)))
    await engine.dispose()
    assert user.password_hash is not None
    assert user.password_hash.startswith(b"$2b$12$")
    assert bcrypt.checkpw(b"a long enough secret", user.password_hash)
    assert events == ["signup", "email_verification_sent", "login_succeeded", "email_verified"]
