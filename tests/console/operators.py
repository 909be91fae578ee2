"""Operators for the console's tests: signed-in accounts holding a role."""

from __future__ import annotations

import secrets

from computebill.auth.service import Role
from computebill.config import Settings
from tests.support.admins import make_admin
from tests.support.http import Api
from tests.support.pages import Browser


async def operator(api: Api, settings: Settings, role: Role) -> tuple[str, str]:
    """A signed-in operator of this role, with two-factor authentication on: their access token
    and address."""
    email = f"{role.value}-{secrets.token_hex(4)}@example.com"
    token = (await api.sign_up(email))["access_token"]
    await make_admin(
        settings, email, http=api.http, access_token=token, at=api.clock.now(), role=role
    )
    return token, email


async def operator_browser(browser: Browser, settings: Settings, role: Role) -> str:
    """Sign `browser` in as a new operator of this role, with two-factor authentication on, for
    the console's pages: their address."""
    email = f"{role.value}-{secrets.token_hex(4)}@example.com"
    await browser.sign_up(email)
    await make_admin(
        settings,
        email,
        http=browser.http,
        access_token=browser.access_token,
        at=browser.clock.now(),
        role=role,
    )
    return email


async def audit_entries(api: Api, token: str, **filters: str) -> list[dict[str, object]]:
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    answer = await api.get(f"/api/v1/admin/audit?{query}", token)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["entries"])
