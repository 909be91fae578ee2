"""`GET /api/v1/credits`: the caller's live balance, which moves every second an instance runs
without waiting for a settlement, shown in cents rounded down; the burn rate, runway and
exhaustion time; and the grants left, in the order they are spent. Each answer its documented
schema."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.billing.schemas import CreditsOut
from computebill.credits.models import EntryKind
from computebill.credits.service import grant_credit
from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances import metering
from tests.credits.ledger import post
from tests.instances.metering import add_metered
from tests.support.http import Api
from tests.support.openapi import assert_documented

NOTHING: dict[str, object] = {
    "balance_cents": 0,
    "live_balance_millicents": 0,
    "settled_balance_millicents": 0,
    "burn_rate_cents_per_hour": 0,
    "burn_rate_millicents_per_hour": 0,
    "runway_seconds": None,
    "exhausts_at": None,
    "grants": [],
    "auto_recharge": None,
}


async def test_credits_need_an_access_token(api: Api) -> None:
    answer = await api.http.get("/api/v1/credits")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_new_customer_has_nothing(api: Api, email: str) -> None:
    token = (await api.sign_up(email))["access_token"]
    answer = await api.get("/api/v1/credits", token)
    assert_documented(api.app, answer, CreditsOut)
    assert answer.json() == NOTHING


async def test_the_balance_shows_only_whole_cents_the_customer_has(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    user_id = uuid.UUID(pair["user"]["id"])
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, user_id, EntryKind.TOP_UP, 2_500_000, payment_intent_id="pi_t")
        await post(db, user_id, EntryKind.USAGE, -1)
    answer = await api.get("/api/v1/credits", pair["access_token"])
    assert answer.json() == NOTHING | {
        "balance_cents": 2_499,
        "live_balance_millicents": 2_499_999,
        "settled_balance_millicents": 2_499_999,
    }


async def test_the_live_balance_moves_with_every_second_an_instance_runs(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    user_id, token = uuid.UUID(pair["user"]["id"]), pair["access_token"]
    started = api.clock.now()
    rate = 3_612_345  # millicents an hour: $36.12345
    async with unit_of_work(create_sessionmaker(engine)) as db:
        await post(db, user_id, EntryKind.TOP_UP, 10_000_000, payment_intent_id="pi_t")
        posted = await grant_credit(
            db,
            user_id=user_id,
            amount_millicents=500_000,
            idempotency_key=f"grant:{uuid.uuid4()}",
            expires_at=started + timedelta(days=30),
            now=started,
        )
        await add_metered(db, user_id, rate=rate, started_at=started)

    api.clock.advance(seconds=100.5)
    first = await api.get("/api/v1/credits", token)
    assert_documented(api.app, first, CreditsOut)
    live = 10_500_000 - metering.owed_millicents(rate, 100)
    assert first.json() == {
        "balance_cents": live // 1000,
        "live_balance_millicents": live,
        "settled_balance_millicents": 10_500_000,
        "burn_rate_cents_per_hour": 3_612,
        "burn_rate_millicents_per_hour": rate,
        "runway_seconds": live * 3600 // rate,
        "exhausts_at": (api.clock.now() + timedelta(seconds=live * 3600 // rate))
        .isoformat()
        .replace("+00:00", "Z"),
        "grants": [
            {
                "id": str(posted.posted.entry.id),
                "amount_millicents": 500_000,
                "remaining_millicents": 500_000,  # spent when the run is settled
                "expires_at": posted.grant.expires_at.isoformat().replace("+00:00", "Z")
                if posted.grant.expires_at
                else None,
            }
        ],
        "auto_recharge": None,
    }

    api.clock.advance(seconds=60)
    later = (await api.get("/api/v1/credits", token)).json()
    assert later["live_balance_millicents"] == 10_500_000 - metering.owed_millicents(rate, 160)
    assert later["settled_balance_millicents"] == 10_500_000
