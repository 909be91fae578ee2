"""`GET /api/v1/instances` as its schema documents it: the answer the list builds from rows, without
the ORM and without a response model validating it, is the one `InstanceList` describes, byte for
byte, and each listed instance says what the instance's own answer and its order's answer say, at
the same moment."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances import service
from computebill.instances.models import Instance, InstanceStatus
from computebill.instances.schemas import InstanceList
from computebill.jobs import take_requested_jobs
from computebill.money import round_half_up
from tests.support.http import Api
from tests.support.openapi import assert_documented
from tests.support.orders import add_paid_order


async def add_instances(engine: AsyncEngine, api: Api, user_id: str) -> list[Instance]:
    """A paid order's four instances, as provisioning makes them, then one running for an hour,
    one ended (on another SSH port), one failed, one still provisioning."""
    now = api.clock.now()
    async with unit_of_work(create_sessionmaker(engine)) as db:
        order = await add_paid_order(
            db, uuid.UUID(user_id), [("nvidia-h100", 3, 2), ("amd-mi250x", 1, 1)], now=now
        )
        await service.create_instances(db, order.id, now=now)
        take_requested_jobs(db)  # the test plays the worker
        made = list(
            await db.scalars(
                select(Instance).where(Instance.order_id == order.id).order_by(Instance.name)
            )
        )
        running, ended, failed = made[:3]
        assert running.paid_seconds is not None
        assert ended.paid_seconds is not None
        started = now - timedelta(hours=1)
        long_ago = started.replace(microsecond=0) - timedelta(hours=2)  # a whole second
        machine = {"ip_address": "203.0.113.7", "ssh_user": "ubuntu", "ssh_port": 22}
        changes: dict[uuid.UUID, dict[str, object]] = {
            running.id: machine
            | {
                "status": InstanceStatus.RUNNING,
                "started_at": started,
                "expires_at": started + timedelta(seconds=running.paid_seconds),
            },
            ended.id: machine
            | {
                "ssh_port": 2222,
                "status": InstanceStatus.TERMINATED,
                "started_at": long_ago,
                "expires_at": long_ago + timedelta(seconds=ended.paid_seconds),
                "terminated_at": long_ago + timedelta(minutes=30),
            },
            failed.id: {"status": InstanceStatus.FAILED, "failure_reason": "no capacity"},
        }
        for instance_id, values in changes.items():
            await db.execute(update(Instance).where(Instance.id == instance_id).values(**values))
        return [await db.get_one(Instance, i.id, populate_existing=True) for i in made]


async def test_the_list_is_its_documented_schema_and_agrees_with_each_instance(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    token = pair["access_token"]
    made = await add_instances(engine, api, pair["user"]["id"])
    other = await api.sign_up("other-" + email)
    await add_instances(engine, api, other["user"]["id"])
    api.clock.advance(seconds=30)

    answer = await api.get("/api/v1/instances", token)
    assert_documented(api.app, answer, InstanceList)
    listed = answer.json()["instances"]
    assert {i["id"] for i in listed} == {str(i.id) for i in made}
    running = next(i for i in listed if i["status"] == "running")
    used = 3600 + 30
    paid = next(i for i in made if str(i.id) == running["id"])
    assert paid.paid_seconds is not None
    assert paid.paid_cents is not None
    assert running["remaining_seconds"] == paid.paid_seconds - used
    assert running["cost_so_far_cents"] == round_half_up(paid.paid_cents * used, paid.paid_seconds)
    assert {i["status"] for i in listed} == {"running", "terminated", "failed", "provisioning"}

    for instance in listed:
        detail = (await api.get(f"/api/v1/instances/{instance['id']}", token)).json()
        assert {name: detail[name] for name in instance} == instance
    order = (await api.get(f"/api/v1/orders/{made[0].order_id}", token)).json()
    assert order["instances"] == listed
