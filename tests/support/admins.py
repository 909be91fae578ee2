"""Operators for tests: a signed-up user given the admin or support role (as `computebill admin
grant` does, in this process) and two-factor authentication through the API, as a real operator
would turn it on (the console refuses operators without it while `REQUIRE_ADMIN_2FA` is on)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pyotp

from computebill.auth.service import Role, set_role
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work


@dataclass(frozen=True, slots=True)
class TwoFactor:
    """What an account's owner keeps once two-factor authentication is on."""

    secret: str
    recovery_codes: list[str]

    def code(self, at: datetime) -> str:
        return pyotp.TOTP(self.secret).at(at)


async def turn_on_two_factor(
    http: httpx.AsyncClient, access_token: str, *, at: datetime | None = None
) -> TwoFactor:
    """`POST /api/v1/me/2fa/setup`, then `/enable` with the code of `at` (the app's clock; the
    wall clock by default). The session of `access_token` stays signed in; the others end."""
    headers = {"authorization": f"Bearer {access_token}"}
    setup = await http.post("/api/v1/me/2fa/setup", headers=headers)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    code = pyotp.TOTP(secret).at(at or datetime.now(UTC))
    enabled = await http.post("/api/v1/me/2fa/enable", json={"code": code}, headers=headers)
    assert enabled.status_code == 200, enabled.text
    return TwoFactor(secret=secret, recovery_codes=enabled.json()["recovery_codes"])


async def grant_admin_role(settings: Settings, email: str, role: Role = Role.ADMIN) -> None:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            assert await set_role(db, email=email, role=role) is not None
    finally:
        await engine.dispose()


async def make_admin(
    settings: Settings,
    email: str,
    *,
    http: httpx.AsyncClient,
    access_token: str,
    at: datetime | None = None,
    role: Role = Role.ADMIN,
) -> TwoFactor:
    """The account of `email` (signed in with `access_token`) made an operator (an admin unless
    `role` says otherwise) with 2FA on."""
    await grant_admin_role(settings, email, role)
    return await turn_on_two_factor(http, access_token, at=at)
