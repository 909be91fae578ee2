"""The operator's writes beyond refunds and credit: ending a customer's sessions, replaying a
Stripe event, changing a GPU model. Each checks the role on the server, the destructive ones a
recent login, and each lands in the audit log."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update

from computebill.auth.models import User
from computebill.auth.service import Role
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.instances.models import Instance
from computebill.instances.service import create_instances
from computebill.jobs import take_requested_jobs
from computebill.payments.models import EventStatus, StripeEvent
from tests.console.operators import audit_entries, operator
from tests.support.http import Api
from tests.support.orders import add_paid_order

RATE_MODEL = "amd-mi355x"


async def test_support_ends_a_customers_sessions_and_their_tokens_stop_at_once(
    api: Api, settings: Settings, email: str
) -> None:
    support_token, support_email = await operator(api, settings, Role.SUPPORT)
    customer = await api.sign_up(email)
    second = (await api.log_in(email)).json()
    assert (await api.get("/api/v1/me", customer["access_token"])).status_code == 200

    answer = await api.call(
        "POST", f"/api/v1/admin/customers/{customer['user']['id']}/sessions/revoke", support_token
    )

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"revoked": 2}
    for token in (customer["access_token"], second["access_token"]):
        assert (await api.get("/api/v1/me", token)).status_code == 401
    assert (await api.refresh(second["refresh_token"])).status_code == 401
    [entry] = await audit_entries(api, support_token, actor=support_email)
    assert (entry["action"], entry["target_id"], entry["after"]) == (
        "sessions.revoked",
        customer["user"]["id"],
        {"revoked": 2},
    )


async def test_a_customer_cannot_end_anothers_sessions(api: Api, email: str) -> None:
    victim = await api.sign_up(email)
    attacker = await api.sign_up(f"other-{secrets.token_hex(4)}@example.com")
    answer = await api.call(
        "POST",
        f"/api/v1/admin/customers/{victim['user']['id']}/sessions/revoke",
        attacker["access_token"],
    )
    assert answer.status_code == 403
    assert (await api.get("/api/v1/me", victim["access_token"])).status_code == 200


async def test_ending_an_unknown_customers_sessions_is_a_404(api: Api, settings: Settings) -> None:
    token, _ = await operator(api, settings, Role.ADMIN)
    answer = await api.call(
        "POST", f"/api/v1/admin/customers/{uuid.uuid4()}/sessions/revoke", token
    )
    assert answer.status_code == 404
    assert answer.json()["code"] == "customer_not_found"


async def failed_event(settings: Settings) -> str:
    """A stored Stripe event whose processing failed for good (of a type nothing acts on: a
    replay ends it `ignored`)."""
    event_id = f"evt_{secrets.token_hex(12)}"
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            now = datetime.now(UTC)
            db.add(
                StripeEvent(
                    id=event_id,
                    type="customer.created",
                    created=now,
                    payload={
                        "id": event_id,
                        "type": "customer.created",
                        "data": {"object": {"id": f"cus_{secrets.token_hex(7)}"}},
                    },
                    received_at=now,
                    status=EventStatus.FAILED,
                    attempts=5,
                    last_error="boom",
                )
            )
    finally:
        await engine.dispose()
    return event_id


async def event_status(settings: Settings, event_id: str) -> EventStatus:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            status = await db.scalar(select(StripeEvent.status).where(StripeEvent.id == event_id))
    finally:
        await engine.dispose()
    assert status is not None
    return status


async def test_an_admin_replays_a_failed_event_and_support_cannot(
    api: Api, settings: Settings
) -> None:
    admin_token, admin_email = await operator(api, settings, Role.ADMIN)
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    event_id = await failed_event(settings)
    path = f"/api/v1/admin/events/{event_id}/replay"

    refused = await api.call("POST", path, support_token)
    assert refused.status_code == 403
    assert await event_status(settings, event_id) is EventStatus.FAILED

    answer = await api.call("POST", path, admin_token)
    assert answer.status_code == 202, answer.text
    assert await event_status(settings, event_id) is EventStatus.PENDING
    [entry] = await audit_entries(api, admin_token, actor=admin_email)
    assert (entry["action"], entry["target_type"], entry["target_id"]) == (
        "event.replayed",
        "stripe_event",
        event_id,
    )
    unknown = await api.call("POST", "/api/v1/admin/events/evt_nothing/replay", admin_token)
    assert unknown.status_code == 404


async def test_a_replay_needs_a_recent_login(api: Api, settings: Settings) -> None:
    admin_token, _ = await operator(api, settings, Role.ADMIN)
    event_id = await failed_event(settings)
    api.clock.advance(seconds=settings.reauthenticate_after_seconds + 1)
    answer = await api.call("POST", f"/api/v1/admin/events/{event_id}/replay", admin_token)
    assert answer.status_code == 403
    assert answer.json()["code"] == "reauthentication_required"
    assert await event_status(settings, event_id) is EventStatus.FAILED


async def test_an_admin_changes_a_rate_which_quotes_use_at_once(
    api: Api, settings: Settings
) -> None:
    admin_token, admin_email = await operator(api, settings, Role.ADMIN)
    before = (await api.http.get(f"/api/v1/gpus/{RATE_MODEL}")).json()["price_per_gpu_hour_cents"]
    path = f"/api/v1/admin/gpus/{RATE_MODEL}"
    try:
        answer = await api.call(
            "PATCH", path, admin_token, {"price_per_gpu_hour_cents": before + 7}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "slug": RATE_MODEL,
            "before": {"price_per_gpu_hour_cents": before},
            "after": {"price_per_gpu_hour_cents": before + 7},
        }
        shown = (await api.http.get(f"/api/v1/gpus/{RATE_MODEL}")).json()
        assert shown["price_per_gpu_hour_cents"] == before + 7
        [entry] = await audit_entries(api, admin_token, actor=admin_email)
        assert (entry["action"], entry["target_id"], entry["before"], entry["after"]) == (
            "gpu_model.changed",
            RATE_MODEL,
            {"price_per_gpu_hour_cents": before},
            {"price_per_gpu_hour_cents": before + 7},
        )
    finally:
        restored = await api.call("PATCH", path, admin_token, {"price_per_gpu_hour_cents": before})
        assert restored.status_code == 200


async def test_a_gpu_change_is_refused_to_support_and_bad_bodies(
    api: Api, settings: Settings
) -> None:
    admin_token, _ = await operator(api, settings, Role.ADMIN)
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    path = f"/api/v1/admin/gpus/{RATE_MODEL}"

    assert (await api.call("PATCH", path, support_token, {"active": False})).status_code == 403
    for body in (
        {},
        {"price_per_gpu_hour_cents": 0},
        {"price_per_gpu_hour_cents": "9"},
        {"active": "no"},
        {"rate": 5},
    ):
        answer = await api.call("PATCH", path, admin_token, body)
        assert answer.status_code == 422, body
        assert answer.headers["content-type"] == "application/problem+json"
    unknown = await api.call(
        "PATCH", "/api/v1/admin/gpus/nvidia-nothing", admin_token, {"active": True}
    )
    assert unknown.status_code == 404
    assert (await api.http.get(f"/api/v1/gpus/{RATE_MODEL}")).status_code == 200


async def provisioning_instance(settings: Settings, api: Api, user_id: str) -> uuid.UUID:
    """A paid order's instance, made and not yet booted (the test plays the worker)."""
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            order = await add_paid_order(
                db, uuid.UUID(user_id), [("nvidia-h100", 1, 2)], now=api.clock.now()
            )
            await create_instances(db, order.id, now=api.clock.now())
            take_requested_jobs(db)
            instance_id = await db.scalar(select(Instance.id).where(Instance.order_id == order.id))
    finally:
        await engine.dispose()
    assert instance_id is not None
    return instance_id


async def test_an_admin_force_stops_a_customers_instance_with_a_reason(
    api: Api, settings: Settings, email: str
) -> None:
    admin_token, admin_email = await operator(api, settings, Role.ADMIN)
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    customer = await api.sign_up(email)
    instance_id = await provisioning_instance(settings, api, customer["user"]["id"])
    path = f"/api/v1/admin/instances/{instance_id}/stop"

    assert (await api.call("POST", path, support_token, {"reason": "abuse"})).status_code == 403
    by_owner = await api.call("POST", path, customer["access_token"], {"reason": "x"})
    assert by_owner.status_code == 403
    for body in ({}, {"reason": "   "}, {"reason": 5}):
        assert (await api.call("POST", path, admin_token, body)).status_code == 422, body

    answer = await api.call("POST", path, admin_token, {"reason": "crypto mining  reported"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "stopping"
    seen = await api.get(f"/api/v1/instances/{instance_id}", customer["access_token"])
    assert seen.json()["history"][-1]["reason"] == "stopped by an operator: crypto mining reported"
    again = await api.call("POST", path, admin_token, {"reason": "again"})
    assert again.status_code == 202
    [entry] = await audit_entries(api, admin_token, actor=admin_email)
    assert (entry["action"], entry["target_id"], entry["before"], entry["after"]) == (
        "instance.stopped",
        str(instance_id),
        {"status": "provisioning"},
        {"status": "stopping"},
    )
    assert entry["reason"] == "crypto mining reported"
    unknown = await api.call(
        "POST", f"/api/v1/admin/instances/{uuid.uuid4()}/stop", admin_token, {"reason": "x"}
    )
    assert unknown.status_code == 404


async def test_support_finds_a_customer_by_address_name_or_id(api: Api, settings: Settings) -> None:
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    tag = secrets.token_hex(4)
    email = f"ada-{tag}@example.com"
    customer = await api.sign_up(email)
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            await db.execute(
                update(User).where(User.email == email).values(name=f"Ada Lovelace{tag}")
            )
    finally:
        await engine.dispose()

    for query in (f"ada-{tag}", email.upper(), customer["user"]["id"], f"lovelace{tag}"):
        found = await api.get(f"/api/v1/admin/customers?q={query}", support_token)
        assert found.status_code == 200, found.text
        assert [c["email"] for c in found.json()["customers"]] == [email], query
    # Wildcards are letters to look for, not patterns.
    for query in ("%", "_", f"ada_{tag}"):
        found = await api.get(f"/api/v1/admin/customers?q={query}", support_token)
        assert email not in [c["email"] for c in found.json()["customers"]], query
    for bad in ("", "%00", "a%0Ab"):
        refused = await api.get(f"/api/v1/admin/customers?q={bad}", support_token)
        assert refused.status_code == 422, bad
    customer_token = customer["access_token"]
    assert (await api.get(f"/api/v1/admin/customers?q={email}", customer_token)).status_code == 403


async def test_a_customers_page_shows_sessions_orders_instances_balance_and_auth_events(
    api: Api, settings: Settings, email: str
) -> None:
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    customer = await api.sign_up(email)
    instance_id = await provisioning_instance(settings, api, customer["user"]["id"])

    answer = await api.get(f"/api/v1/admin/customers/{customer['user']['id']}", support_token)

    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["customer"]["email"] == email
    assert page["customer"]["role"] == "user"
    assert page["customer"]["email_verified"] is True
    assert len(page["sessions"]) == 1
    [order] = page["orders"]
    assert order["status"] == "paid"
    assert [i["id"] for i in page["instances"]] == [str(instance_id)]
    assert page["balance_millicents"] == 0
    types = [event["type"] for event in page["auth_events"]]
    assert {"signup", "email_verified"} <= set(types)
    unknown = await api.get(f"/api/v1/admin/customers/{uuid.uuid4()}", support_token)
    assert unknown.status_code == 404
