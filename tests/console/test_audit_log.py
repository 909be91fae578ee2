"""The operator roles, the recent-login rule and the audit log: who may read and write, what
the log records of each write, and that no entry can be altered."""

from __future__ import annotations

import secrets
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from computebill.auth.service import Role
from computebill.config import Settings
from computebill.db import create_engine
from tests.console.operators import audit_entries, operator
from tests.support.admins import turn_on_two_factor
from tests.support.http import Api
from tests.support.settings import settings_environment

PASSWORD = "correct horse battery"


async def post_credit(api: Api, token: str, user_id: str, cents: int = 500) -> int:
    answer = await api.call(
        "POST",
        f"/api/v1/admin/customers/{user_id}/credits",
        token,
        {"amount_cents": cents, "kind": "grant", "reason": "goodwill"},
    )
    return answer.status_code


async def test_a_credit_posting_is_in_the_log_with_who_what_and_why(
    api: Api, settings: Settings, email: str
) -> None:
    admin_token, admin_email = await operator(api, settings, Role.ADMIN)
    customer = await api.sign_up(email)

    assert await post_credit(api, admin_token, customer["user"]["id"], 700) == 201

    [entry] = await audit_entries(api, admin_token, actor=admin_email, action="credit.posted")
    assert entry["target_type"] == "user"
    assert entry["target_id"] == customer["user"]["id"]
    assert entry["after"]["amount_cents"] == 700  # type: ignore[index]
    assert entry["after"]["kind"] == "grant"  # type: ignore[index]
    assert entry["reason"] == "goodwill"
    assert entry["actor"] == admin_email
    assert entry["ip_address"] == "127.0.0.1"


async def test_support_reads_the_log_but_cannot_write(
    api: Api, settings: Settings, email: str
) -> None:
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    customer = await api.sign_up(email)

    assert await post_credit(api, support_token, customer["user"]["id"]) == 403
    refund = await api.call(
        "POST",
        f"/api/v1/admin/orders/{uuid.uuid4()}/refund",
        support_token,
        {"amount_cents": 100},
    )
    assert refund.status_code == 403
    assert refund.json()["code"] == "forbidden"
    assert await audit_entries(api, support_token, action="credit.posted") is not None


async def test_a_customer_cannot_read_the_log(api: Api, email: str) -> None:
    token = (await api.sign_up(email))["access_token"]
    answer = await api.get("/api/v1/admin/audit", token)
    assert answer.status_code == 403
    assert answer.json()["code"] == "forbidden"
    assert (await api.http.get("/api/v1/admin/audit")).status_code == 401


async def test_destructive_actions_need_a_recent_login(
    api: Api, settings: Settings, email: str
) -> None:
    admin_token, _ = await operator(api, settings, Role.ADMIN)
    customer = await api.sign_up(email)
    api.clock.advance(seconds=settings.reauthenticate_after_seconds + 1)

    stale = await api.call(
        "POST",
        f"/api/v1/admin/customers/{customer['user']['id']}/credits",
        admin_token,
        {"amount_cents": 500, "kind": "grant", "reason": "goodwill"},
    )
    assert stale.status_code == 403
    assert stale.json()["code"] == "reauthentication_required"
    refund = await api.call("POST", f"/api/v1/admin/orders/{uuid.uuid4()}/refund", admin_token, {})
    assert refund.json()["code"] == "reauthentication_required"
    # Reads need no recent login.
    assert (await api.get("/api/v1/admin/audit", admin_token)).status_code == 200

    wrong = await api.call(
        "POST", "/api/v1/auth/reauthenticate", admin_token, {"password": "not it at all"}
    )
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "wrong_password"
    assert await post_credit(api, admin_token, customer["user"]["id"]) == 403

    right = await api.call(
        "POST", "/api/v1/auth/reauthenticate", admin_token, {"password": PASSWORD}
    )
    assert right.status_code == 204
    assert await post_credit(api, admin_token, customer["user"]["id"]) == 201


async def test_the_log_pages_newest_first_and_filters_by_action(
    api: Api, settings: Settings, email: str
) -> None:
    admin_token, admin_email = await operator(api, settings, Role.ADMIN)
    customer = await api.sign_up(email)
    for cents in (100, 200, 300):
        assert await post_credit(api, admin_token, customer["user"]["id"], cents) == 201
        api.clock.advance(seconds=1)

    first = await api.get(f"/api/v1/admin/audit?actor={admin_email}&limit=2", admin_token)
    page = first.json()
    assert [e["after"]["amount_cents"] for e in page["entries"]] == [300, 200]
    rest = await api.get(
        f"/api/v1/admin/audit?actor={admin_email}&limit=2&cursor={page['next_cursor']}",
        admin_token,
    )
    assert [e["after"]["amount_cents"] for e in rest.json()["entries"]] == [100]
    assert rest.json()["next_cursor"] is None
    assert await audit_entries(api, admin_token, actor=admin_email, action="role.granted") == []


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "computebill", "admin", *args],
        env=settings_environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_roles_are_granted_and_revoked_on_the_command_line_and_logged(
    api: Api, settings: Settings, email: str
) -> None:
    account = await api.sign_up(email)
    admin_token, _ = await operator(api, settings, Role.ADMIN)

    token = account["access_token"]
    await turn_on_two_factor(api.http, token, at=api.clock.now())

    granted = run_cli(settings, "grant", email, "--role", "support")
    assert granted.returncode == 0, granted.stderr
    assert (await api.get("/api/v1/admin/audit", token)).status_code == 200

    revoked = run_cli(settings, "revoke", email)
    assert revoked.returncode == 0, revoked.stderr
    assert (await api.get("/api/v1/admin/audit", token)).status_code == 403

    logged = [
        entry
        for entry in await audit_entries(api, admin_token, limit="100")
        if entry["target_id"] == account["user"]["id"]
    ]
    assert [(e["action"], e["before"], e["after"]) for e in logged] == [
        ("role.revoked", {"role": "support"}, {"role": "user"}),
        ("role.granted", {"role": "user"}, {"role": "support"}),
    ]
    assert all(str(e["actor"]).startswith("command line (") for e in logged)
    assert all(e["actor_id"] is None for e in logged)

    unknown = run_cli(settings, "grant", f"nobody-{secrets.token_hex(3)}@example.com")
    assert unknown.returncode == 1
    assert "no account" in unknown.stderr


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET reason = 'rewritten'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
async def test_an_audit_entry_cannot_be_altered_or_removed(
    api: Api, settings: Settings, email: str, statement: str
) -> None:
    admin_token, _ = await operator(api, settings, Role.ADMIN)
    customer = await api.sign_up(email)
    assert await post_credit(api, admin_token, customer["user"]["id"]) == 201

    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError, match="append-only"):
                await connection.execute(text(statement))
    finally:
        await engine.dispose()
    assert await audit_entries(api, admin_token, action="credit.posted")
