"""Two-factor authentication through the JSON API: setup and enabling, the login's second step
(TOTP or recovery code), replay, limits, challenges, turning it off, and admins."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from computebill.auth.models import LoginChallenge, RecoveryCode, User
from computebill.config import Settings
from computebill.devserver.scratch import delete_namespace
from computebill.mail.models import OutboxEmail
from tests.support.admins import TwoFactor, grant_admin_role, turn_on_two_factor
from tests.support.http import Api, api_for

PASSWORD = "correct horse battery"
STEP_SECONDS = 30


async def _stored_user(engine: AsyncEngine, email: str) -> User:
    async with AsyncSession(engine) as db:
        user = await db.scalar(select(User).where(User.email == email))
        assert user is not None
        return user


async def _emails(engine: AsyncEngine, kind: str, user_id: str) -> list[OutboxEmail]:
    async with AsyncSession(engine) as db:
        found = await db.scalars(
            select(OutboxEmail).where(OutboxEmail.dedupe_key.startswith(f"{kind}:{user_id}:"))
        )
        return list(found)


async def _signed_up_with_two_factor(api: Api, email: str) -> tuple[dict[str, Any], TwoFactor]:
    pair = await api.sign_up(email)
    two_factor = await turn_on_two_factor(api.http, pair["access_token"], at=api.clock.now())
    return pair, two_factor


async def _challenge(api: Api, email: str) -> str:
    answer = await api.log_in(email)
    assert answer.status_code == 401, answer.text
    challenge = answer.json()["challenge"]
    assert isinstance(challenge, str)
    return challenge


async def _second_step(api: Api, challenge: str, code: str) -> httpx.Response:
    return await api.http.post(
        "/api/v1/auth/login/mfa", json={"challenge": challenge, "code": code}
    )


def _next_step(api: Api, two_factor: TwoFactor) -> str:
    """The code of the next time step, the clock moved to it: a code never used yet."""
    api.clock.advance(seconds=STEP_SECONDS)
    return two_factor.code(api.clock.now())


async def test_setup_waits_for_a_right_code_and_keeps_the_secret_sealed(
    api: Api, engine: AsyncEngine, email: str
) -> None:
    pair = await api.sign_up(email)
    token = pair["access_token"]
    setup = await api.call("POST", "/api/v1/me/2fa/setup", token)
    assert setup.status_code == 200
    secret = setup.json()["secret"]
    uri = setup.json()["otpauth_uri"]
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.secret == secret
    assert parsed.issuer == "Compute Billing"
    assert parsed.name == email
    stored = await _stored_user(engine, email)
    assert stored.totp_pending_secret is not None
    assert secret.encode() not in stored.totp_pending_secret
    assert stored.totp_enabled_at is None
    # Pending is not on: a login still gives tokens at once.
    assert (await api.log_in(email)).status_code == 200

    wrong = str((int(pyotp.TOTP(secret).at(api.clock.now())) + 1) % 1_000_000).zfill(6)
    refused = await api.call("POST", "/api/v1/me/2fa/enable", token, {"code": wrong})
    assert refused.status_code == 422
    assert refused.json()["code"] == "invalid_code"
    assert (await api.get("/api/v1/me", token)).json()["two_factor_enabled"] is False

    code = pyotp.TOTP(secret).at(api.clock.now())
    enabled = await api.call("POST", "/api/v1/me/2fa/enable", token, {"code": code})
    assert enabled.status_code == 200
    codes = enabled.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert (await api.get("/api/v1/me", token)).json()["two_factor_enabled"] is True
    stored = await _stored_user(engine, email)
    assert stored.totp_secret is not None
    assert secret.encode() not in stored.totp_secret
    async with AsyncSession(engine) as db:
        hashes = list(
            await db.scalars(
                select(RecoveryCode.code_hash).where(RecoveryCode.user_id == stored.id)
            )
        )
    assert len(hashes) == 10
    assert not any(code.replace("-", "").encode() in h for h in hashes for code in codes)
    # Set up again once on: refused.
    again = await api.call("POST", "/api/v1/me/2fa/setup", token)
    assert again.status_code == 409
    assert again.json()["code"] == "two_factor_already_enabled"
    [notice] = await _emails(engine, "two_factor_on", pair["user"]["id"])
    assert notice.recipient == email


async def test_turning_it_on_needs_a_recent_login(
    api: Api, engine: AsyncEngine, settings: Settings, email: str
) -> None:
    """A stolen session (SECURITY-CHECKLIST 9: its owner's other sessions would end) cannot
    enrol the thief's authenticator alone: with a login older than REAUTHENTICATE_AFTER_SECONDS,
    403 `reauthentication_required` until the password is entered again."""
    pair = await api.sign_up(email)
    token = pair["access_token"]
    other = (await api.log_in(email, device="phone")).json()
    secret = (await api.call("POST", "/api/v1/me/2fa/setup", token)).json()["secret"]
    api.clock.advance(seconds=settings.reauthenticate_after_seconds + 1)
    code = pyotp.TOTP(secret).at(api.clock.now())

    stale = await api.call("POST", "/api/v1/me/2fa/enable", token, {"code": code})

    assert stale.status_code == 403
    assert stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["code"] == "reauthentication_required"
    assert "/auth/reauthenticate" in stale.json()["detail"]
    assert (await _stored_user(engine, email)).totp_enabled_at is None
    assert (await api.get("/api/v1/me", other["access_token"])).status_code == 200
    wrong = await api.call("POST", "/api/v1/auth/reauthenticate", token, {"password": "nope!"})
    assert (wrong.status_code, wrong.json()["code"]) == (403, "wrong_password")
    assert (
        await api.call("POST", "/api/v1/me/2fa/enable", token, {"code": code})
    ).status_code == 403
    again = await api.call("POST", "/api/v1/auth/reauthenticate", token, {"password": PASSWORD})
    assert again.status_code == 204

    enabled = await api.call("POST", "/api/v1/me/2fa/enable", token, {"code": code})

    assert enabled.status_code == 200, enabled.text
    assert (await api.get("/api/v1/me", token)).json()["two_factor_enabled"] is True


async def test_a_password_alone_gets_a_challenge_and_no_tokens(
    api: Api, engine: AsyncEngine, email: str
) -> None:
    await _signed_up_with_two_factor(api, email)
    answer = await api.log_in(email)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["code"] == "mfa_required"
    assert body["expires_in"] == 300
    assert "access_token" not in answer.text
    assert "refresh_token" not in answer.text
    async with AsyncSession(engine) as db:
        stored = list(await db.scalars(select(LoginChallenge.token_hash)))
    assert body["challenge"].encode() not in stored  # only its digest is kept


async def test_the_second_step_gives_the_same_pair_and_the_session_refreshes(
    api: Api, email: str
) -> None:
    _, two_factor = await _signed_up_with_two_factor(api, email)
    challenge = await _challenge(api, email)
    signed_in = await _second_step(api, challenge, _next_step(api, two_factor))
    assert signed_in.status_code == 200, signed_in.text
    pair = signed_in.json()
    assert set(pair) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "user",
        "device_token",
    }
    assert (await api.get("/api/v1/me", pair["access_token"])).status_code == 200
    refreshed = await api.refresh(pair["refresh_token"])
    assert refreshed.status_code == 200
    assert (await api.get("/api/v1/me", refreshed.json()["access_token"])).status_code == 200


async def test_a_totp_code_is_accepted_once(api: Api, email: str) -> None:
    _, two_factor = await _signed_up_with_two_factor(api, email)
    # The code that turned 2FA on is spent: its step is the last used.
    enabling_code = two_factor.code(api.clock.now())
    replayed = await _second_step(api, await _challenge(api, email), enabling_code)
    assert replayed.status_code == 422
    assert replayed.json()["code"] == "invalid_code"

    code = _next_step(api, two_factor)
    assert (await _second_step(api, await _challenge(api, email), code)).status_code == 200
    again = await _second_step(api, await _challenge(api, email), code)
    assert again.status_code == 422
    # The previous step's code is within the window, but older than the one used: refused.
    earlier = pyotp.TOTP(two_factor.secret).at(api.clock.now(), counter_offset=-1)
    assert (await _second_step(api, await _challenge(api, email), earlier)).status_code == 422


async def test_a_recovery_code_works_once(api: Api, engine: AsyncEngine, email: str) -> None:
    _, two_factor = await _signed_up_with_two_factor(api, email)
    code = two_factor.recovery_codes[3]
    first = await _second_step(api, await _challenge(api, email), code.upper())
    assert first.status_code == 200, first.text
    second = await _second_step(api, await _challenge(api, email), code)
    assert second.status_code == 422
    assert second.json()["code"] == "invalid_code"
    other = await _second_step(api, await _challenge(api, email), two_factor.recovery_codes[4])
    assert other.status_code == 200


async def test_a_challenge_expires_and_serves_one_login(api: Api, email: str) -> None:
    _, two_factor = await _signed_up_with_two_factor(api, email)
    challenge = await _challenge(api, email)
    api.clock.advance(minutes=5, seconds=1)
    late = await _second_step(api, challenge, two_factor.code(api.clock.now()))
    assert late.status_code == 401
    assert late.json()["code"] == "invalid_challenge"

    challenge = await _challenge(api, email)
    assert (await _second_step(api, challenge, _next_step(api, two_factor))).status_code == 200
    reused = await _second_step(api, challenge, _next_step(api, two_factor))
    assert reused.status_code == 401
    assert reused.json()["code"] == "invalid_challenge"
    forged = await _second_step(api, secrets.token_urlsafe(32), _next_step(api, two_factor))
    assert forged.status_code == 401


@pytest.fixture
async def own_limits(settings: Settings) -> AsyncIterator[Api]:
    """The app on a Redis namespace of its own, so its counters start empty."""
    namespace = f"{settings.redis_namespace}-mfa-{secrets.token_hex(3)}"
    async for api in api_for(settings.model_copy(update={"redis_namespace": namespace})):
        yield api
    await delete_namespace(settings.required_redis_url, namespace)


async def test_guessing_codes_is_limited_per_challenge_and_per_account(
    own_limits: Api, email: str
) -> None:
    api = own_limits
    _, two_factor = await _signed_up_with_two_factor(api, email)
    challenge = await _challenge(api, email)
    for guess in range(5):
        answer = await _second_step(api, challenge, f"{guess:06d}x")
        assert answer.status_code == 422
    limited = await _second_step(api, challenge, _next_step(api, two_factor))
    assert limited.status_code == 429  # even the right code: this challenge is used up
    assert int(limited.headers["retry-after"]) >= 1

    challenge = await _challenge(api, email)
    for guess in range(5):
        assert (await _second_step(api, challenge, f"{guess:06d}y")).status_code == 422
    # Ten wrong codes for the account in 15 minutes: every challenge waits.
    fresh = await _challenge(api, email)
    blocked = await _second_step(api, fresh, two_factor.code(api.clock.now()))
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "rate_limited"


async def test_turning_it_off_needs_the_password_and_a_code(
    api: Api, engine: AsyncEngine, email: str
) -> None:
    pair, two_factor = await _signed_up_with_two_factor(api, email)
    token = pair["access_token"]
    code = _next_step(api, two_factor)
    wrong_password = await api.call(
        "POST", "/api/v1/me/2fa/disable", token, {"password": "not the password", "code": code}
    )
    assert wrong_password.status_code == 403
    assert wrong_password.json()["code"] == "wrong_password"
    no_code = await api.call(
        "POST", "/api/v1/me/2fa/disable", token, {"password": PASSWORD, "code": "000000x"}
    )
    assert no_code.status_code == 422
    assert (await api.get("/api/v1/me", token)).json()["two_factor_enabled"] is True

    off = await api.call(
        "POST", "/api/v1/me/2fa/disable", token, {"password": PASSWORD, "code": code}
    )
    assert off.status_code == 204
    assert (await api.get("/api/v1/me", token)).json()["two_factor_enabled"] is False
    assert (await api.log_in(email)).status_code == 200  # a password is enough again
    stored = await _stored_user(engine, email)
    assert stored.totp_secret is None
    async with AsyncSession(engine) as db:
        left = await db.scalar(select(RecoveryCode.id).where(RecoveryCode.user_id == stored.id))
    assert left is None
    [notice] = await _emails(engine, "two_factor_off", pair["user"]["id"])
    assert "turned off" in notice.subject


async def test_a_recovery_code_turns_it_off_too(api: Api, email: str) -> None:
    pair, two_factor = await _signed_up_with_two_factor(api, email)
    off = await api.call(
        "POST",
        "/api/v1/me/2fa/disable",
        pair["access_token"],
        {"password": PASSWORD, "code": two_factor.recovery_codes[0]},
    )
    assert off.status_code == 204


async def test_turning_it_on_or_off_ends_the_other_sessions_only(api: Api, email: str) -> None:
    laptop = await api.sign_up(email)
    phone = (await api.log_in(email, device="phone")).json()
    two_factor = await turn_on_two_factor(api.http, laptop["access_token"], at=api.clock.now())
    assert (await api.get("/api/v1/me", phone["access_token"])).status_code == 401
    assert (await api.refresh(phone["refresh_token"])).status_code == 401
    assert (await api.get("/api/v1/me", laptop["access_token"])).status_code == 200

    tablet_challenge = await _challenge(api, email)
    tablet = (await _second_step(api, tablet_challenge, _next_step(api, two_factor))).json()
    assert (await api.get("/api/v1/me", tablet["access_token"])).status_code == 200
    off = await api.call(
        "POST",
        "/api/v1/me/2fa/disable",
        laptop["access_token"],
        {"password": PASSWORD, "code": two_factor.recovery_codes[0]},
    )
    assert off.status_code == 204
    assert (await api.get("/api/v1/me", tablet["access_token"])).status_code == 401
    assert (await api.get("/api/v1/me", laptop["access_token"])).status_code == 200


async def test_admins_without_two_factor_are_refused_on_admin_routes(
    api: Api, settings: Settings, email: str
) -> None:
    """REQUIRE_ADMIN_2FA (on by default): the admin role alone is not enough."""
    admin = await api.sign_up(email)
    await grant_admin_role(settings, email)
    refused = await api.get("/api/v1/admin/outbox", admin["access_token"])
    assert refused.status_code == 403
    assert refused.json()["code"] == "two_factor_required"
    assert refused.json()["setup_url"] == "/account/security"
    credit = await api.call(
        "POST",
        f"/api/v1/admin/customers/{uuid.uuid4()}/credits",
        admin["access_token"],
        {"amount_cents": 100, "kind": "grant", "reason": "welcome"},
    )
    assert credit.json()["code"] == "two_factor_required"

    await turn_on_two_factor(api.http, admin["access_token"], at=api.clock.now())
    assert (await api.get("/api/v1/admin/outbox", admin["access_token"])).status_code == 200


async def test_without_the_requirement_an_admin_needs_only_the_role(
    settings: Settings, email: str
) -> None:
    async for api in api_for(settings.model_copy(update={"require_admin_2fa": False})):
        admin = await api.sign_up(email)
        await grant_admin_role(settings, email)
        assert (await api.get("/api/v1/admin/outbox", admin["access_token"])).status_code == 200


async def test_deleting_the_account_removes_its_secret_and_recovery_codes(
    api: Api, engine: AsyncEngine, email: str
) -> None:
    pair, _ = await _signed_up_with_two_factor(api, email)
    user_id = uuid.UUID(pair["user"]["id"])
    deleted = await api.call(
        "POST", "/api/v1/me/delete", pair["access_token"], {"password": PASSWORD}
    )
    assert deleted.status_code == 204
    async with AsyncSession(engine) as db:
        user = await db.get(User, user_id)
        assert user is not None
        assert user.totp_secret is None
        codes = await db.scalar(select(RecoveryCode.id).where(RecoveryCode.user_id == user_id))
    assert codes is None
