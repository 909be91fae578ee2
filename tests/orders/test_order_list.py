"""`GET /api/v1/orders` as its schema documents it: the answer the list builds without the ORM and
without a response model validating it is the one `OrderPage` describes, byte for byte, and each
listed order says what the order's own answer says. Its pages: ties in time, a last page that is
exactly full. With Redis away, a revoked session is still refused (the database answers)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.config import Settings
from computebill.db import create_sessionmaker, unit_of_work
from computebill.orders.models import Order, OrderStatus
from computebill.orders.schemas import OrderPage
from tests.support.http import Api, api_for
from tests.support.openapi import assert_documented
from tests.support.orders import add_paid_order


async def add_orders(
    engine: AsyncEngine, api: Api, user_id: str, count: int, **stored: object
) -> list[uuid.UUID]:
    """`count` paid orders of one line each for the user, with `stored` written over them."""
    ids = []
    async with unit_of_work(create_sessionmaker(engine)) as db:
        for _ in range(count):
            order = await add_paid_order(
                db, uuid.UUID(user_id), [("nvidia-h100", 1, 2)], now=api.clock.now()
            )
            ids.append(order.id)
        if stored:
            await db.execute(update(Order).where(Order.id.in_(ids)).values(**stored))
    return ids


async def test_the_list_is_its_documented_schema_and_agrees_with_each_order(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    user_id, token = pair["user"]["id"], pair["access_token"]
    now = api.clock.now()
    # Every kind of value the summary holds: nulls and times, a whole second among them.
    [pending] = await add_orders(
        engine,
        api,
        user_id,
        1,
        status=OrderStatus.PENDING,
        paid_at=None,
        checkout_url="https://checkout.example/pay",
        checkout_expires_at=now.replace(microsecond=0) + timedelta(minutes=30),
        created_at=now - timedelta(hours=3),
    )
    [refunded] = await add_orders(
        engine,
        api,
        user_id,
        1,
        status=OrderStatus.PARTIALLY_REFUNDED,
        refunded_cents=500,
        needs_review=True,
        created_at=now - timedelta(hours=2),
    )
    [paid] = await add_orders(engine, api, user_id, 1, created_at=now - timedelta(hours=1))

    answer = await api.get("/api/v1/orders", token)
    assert_documented(api.app, answer, OrderPage)
    listed = answer.json()
    assert [o["id"] for o in listed["orders"]] == [str(paid), str(refunded), str(pending)]
    assert listed["next_cursor"] is None
    assert [(o["status"], o["refunded_cents"]) for o in listed["orders"]] == [
        ("paid", 0),
        ("partially_refunded", 500),
        ("pending", 0),
    ]
    for order in listed["orders"]:
        detail = (await api.get(f"/api/v1/orders/{order['id']}", token)).json()
        assert {name: detail[name] for name in order} == order


async def test_orders_made_at_the_same_moment_are_paged_by_id_each_once(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    same_moment = api.clock.now() - timedelta(minutes=5)
    made = await add_orders(engine, api, pair["user"]["id"], 5, created_at=same_moment)

    seen: list[str] = []
    answer = await api.get("/api/v1/orders?limit=2", pair["access_token"])
    while True:
        assert_documented(api.app, answer, OrderPage)
        page = answer.json()
        seen += [o["id"] for o in page["orders"]]
        if page["next_cursor"] is None:
            break
        answer = await api.get(
            f"/api/v1/orders?limit=2&cursor={page['next_cursor']}", pair["access_token"]
        )
    assert seen == sorted((str(i) for i in made), reverse=True)


@pytest.mark.parametrize("limit", [3, 4])
async def test_a_page_says_whether_older_orders_remain(
    api: Api, email: str, engine: AsyncEngine, limit: int
) -> None:
    """Four orders: a page of 4 is the last, one of 3 is followed by a page of the oldest."""
    pair = await api.sign_up(email)
    now = api.clock.now()
    newest_first = [
        str(order_id)
        for age in range(4)
        for order_id in await add_orders(
            engine, api, pair["user"]["id"], 1, created_at=now - timedelta(minutes=age)
        )
    ]

    first = (await api.get(f"/api/v1/orders?limit={limit}", pair["access_token"])).json()
    assert [o["id"] for o in first["orders"]] == newest_first[:limit]
    if limit == 4:
        assert first["next_cursor"] is None
        return
    rest = await api.get(
        f"/api/v1/orders?limit={limit}&cursor={first['next_cursor']}", pair["access_token"]
    )
    assert_documented(api.app, rest, OrderPage)
    assert [o["id"] for o in rest.json()["orders"]] == newest_first[3:]
    assert rest.json()["next_cursor"] is None


@pytest.fixture
async def without_redis(settings: Settings) -> AsyncIterator[Api]:
    """The app with its Redis unreachable (a port nothing listens on)."""
    away = settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    async for value in api_for(away):
        yield value


# SQLAlchemy warns (and ignores the autocommit asked for) if a read takes the connection of a
# transaction already begun: here the revocation check's.
@pytest.mark.filterwarnings("error::sqlalchemy.exc.SAWarning")
async def test_with_redis_away_the_lists_ask_the_database_whether_a_session_was_revoked(
    api: Api, without_redis: Api, email: str, engine: AsyncEngine
) -> None:
    kept = await api.sign_up(email)
    ended = (await api.log_in(email, device="phone")).json()
    [order_id] = await add_orders(engine, api, kept["user"]["id"], 1)
    assert (
        await api.call(
            "POST",
            "/api/v1/auth/logout",
            ended["access_token"],
            {"refresh_token": ended["refresh_token"]},
        )
    ).status_code == 204

    for path in ("/api/v1/orders", "/api/v1/instances"):
        refused = await without_redis.get(path, ended["access_token"])
        assert refused.status_code == 401, refused.text
    listed = await without_redis.get("/api/v1/orders", kept["access_token"])
    assert_documented(without_redis.app, listed, OrderPage)
    assert [o["id"] for o in listed.json()["orders"]] == [str(order_id)]
    instances = await without_redis.get("/api/v1/instances", kept["access_token"])
    assert instances.status_code == 200, instances.text
    assert instances.json() == {"instances": []}
