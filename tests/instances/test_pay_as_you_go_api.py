"""`POST /api/v1/instances`: a pay-as-you-go launch priced by the server at the catalog's rate,
admitted only with credit for its runway (402 problem+json with the shortfall otherwise), the
same Idempotency-Key answering the same instance, and a bad configuration a 422."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.catalog.pricing import Configuration, Rates, price
from computebill.config import Settings
from computebill.credits.models import EntryKind
from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances.jobs import stop_instance, sweep_instances
from computebill.instances.models import Instance, InstanceStatus
from computebill.instances.schemas import InstanceOut
from computebill.instances.service import ACCOUNT_DELETED_REASON
from computebill.jobs import JobName
from tests.credits.ledger import post
from tests.support.http import Api
from tests.support.jobs import RecordingPublisher, job_context

H100 = {"gpu": "nvidia-h100", "gpu_count": 1, "vcpus": 12, "storage_gb": 100}


async def fund(engine: AsyncEngine, user_id: str, millicents: int) -> None:
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, uuid.UUID(user_id), EntryKind.TOP_UP, millicents, payment_intent_id="pi_t")


async def launch(api: Api, token: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}"} | ({"idempotency-key": key} if key else {})
    return await api.http.post("/api/v1/instances", json=body, headers=headers)


async def test_a_launch_without_credit_is_a_402_with_the_shortfall(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    answer = await launch(api, pair["access_token"], H100)
    assert answer.status_code == 402, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "insufficient_credit"
    assert problem["shortfall_cents"] > 0
    async with unit_of_work(create_sessionmaker(engine)) as db:
        made = await db.scalar(
            select(func.count()).where(Instance.user_id == uuid.UUID(pair["user"]["id"]))
        )
    assert made == 0


async def test_a_funded_launch_is_priced_by_the_server_and_repeats_by_its_key(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    await fund(engine, pair["user"]["id"], 100_000_000)  # $1,000
    token = pair["access_token"]
    body = H100 | {"max_hours": 5, "rate_millicents_per_hour": 1, "price": 0}

    first = await launch(api, token, body, key="launch-1")
    assert first.status_code == 201, first.text
    InstanceOut.model_validate(first.json())
    made = first.json()
    quote = await api.http.post("/api/v1/quotes", json=H100 | {"hours": 1})
    assert quote.status_code == 200, quote.text
    assert made["billing"] == "pay_as_you_go"
    assert made["status"] == "provisioning"
    assert made["order_id"] is None
    assert made["max_hours"] == 5
    assert made["rate_millicents_per_hour"] == quote.json()["hourly_millicents"]
    assert (made["paid_cents"], made["cost_so_far_millicents"]) == (None, 0)

    again = await launch(api, token, body, key="launch-1")
    assert again.status_code == 201
    assert again.json()["id"] == made["id"]
    other = await launch(api, token, body, key="launch-2")
    assert other.json()["id"] != made["id"]
    changed = await launch(api, token, body | {"gpu_count": 2}, key="launch-1")
    assert changed.status_code == 409, changed.text
    assert changed.json()["code"] == "conflict"


async def test_a_configuration_the_catalog_does_not_offer_is_a_422(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    await fund(engine, pair["user"]["id"], 100_000_000)
    for body, field in (
        (H100 | {"gpu": "nvidia-none"}, "body.gpu"),
        (H100 | {"gpu_count": 3}, "body.gpu_count"),
        (H100 | {"max_hours": 0}, "body.max_hours"),
        (H100 | {"max_hours": 100_000}, "body.max_hours"),
    ):
        answer = await launch(api, pair["access_token"], body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["errors"][0]["field"] == field
    missing = await launch(api, pair["access_token"], {"gpu": "nvidia-h100"})
    assert missing.status_code == 422


def test_the_rate_is_the_hourly_price_of_the_configuration() -> None:
    rates = Rates(gpu_hour_cents=249, vcpu_hour_millicents=5_000, storage_gb_hour_millicents=100)
    metered = price(rates, Configuration(gpu_count=2, vcpus=24, storage_gb=500, hours=0))
    assert metered.hourly_millicents == 2 * 249_000 + 24 * 5_000 + 500 * 100
    assert metered.unit_total_cents == 0


async def test_deleting_the_account_stops_its_machines_and_their_billing(
    api: Api, email: str, engine: AsyncEngine, settings: Settings
) -> None:
    pair = await api.sign_up(email)
    await fund(engine, pair["user"]["id"], 100_000_000)
    launched = await launch(api, pair["access_token"], H100)
    assert launched.status_code == 201, launched.text
    instance_id = launched.json()["id"]
    deleted = await api.call(
        "POST", "/api/v1/me/delete", pair["access_token"], {"password": "correct horse battery"}
    )
    assert deleted.status_code == 204

    # What the worker runs: the sweep the deletion asked for, then the stops it finds.
    sessions = create_sessionmaker(engine)
    swept = RecordingPublisher()
    await sweep_instances(job_context(settings, sessions, swept))
    stops = [r.args for r in swept.sent if r.name is JobName.STOP_INSTANCE]
    assert (instance_id, ACCOUNT_DELETED_REASON) in stops
    await stop_instance(
        job_context(settings, sessions, RecordingPublisher()), instance_id, ACCOUNT_DELETED_REASON
    )
    async with unit_of_work(sessions) as db:
        instance = await db.get(Instance, uuid.UUID(instance_id))
    assert instance is not None
    assert instance.status is InstanceStatus.TERMINATED
    assert instance.terminated_at is not None
