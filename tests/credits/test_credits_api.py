"""`GET /api/v1/credits/entries`: the caller's ledger newest first, paged by an opaque cursor,
each answer its documented schema."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.credits.models import EntryKind
from computebill.credits.schemas import EntryPage
from computebill.db import create_sessionmaker, unit_of_work
from tests.credits.ledger import post
from tests.support.http import Api
from tests.support.openapi import assert_documented
from tests.support.orders import add_paid_order

Posting = tuple[EntryKind, int, datetime]


async def post_entries(engine: AsyncEngine, user_id: str, postings: list[Posting]) -> list[str]:
    """The postings for the user, committed; their entries' ids."""
    ids = []
    async with unit_of_work(create_sessionmaker(engine)) as db:
        for kind, amount, created_at in postings:
            posted = await post(db, uuid.UUID(user_id), kind, amount, now=created_at)
            ids.append(str(posted.entry.id))
    return ids


@pytest.mark.parametrize("path", ["/api/v1/credits", "/api/v1/credits/entries"])
async def test_credits_need_an_access_token(api: Api, path: str) -> None:
    answer = await api.http.get(path)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_new_customer_has_no_entries(api: Api, email: str) -> None:
    token = (await api.sign_up(email))["access_token"]
    entries = await api.get("/api/v1/credits/entries", token)
    assert_documented(api.app, entries, EntryPage)
    assert entries.json() == {"entries": [], "next_cursor": None}


async def test_the_ledger_pages_newest_first_with_its_references(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await api.sign_up(email)
    user_id, token = pair["user"]["id"], pair["access_token"]
    now = api.clock.now()
    same_moment = now - timedelta(minutes=1)
    made = await post_entries(
        engine,
        user_id,
        [
            (EntryKind.TOP_UP, 1_000_000, now - timedelta(hours=1)),
            (EntryKind.USAGE, -1_000, same_moment),
            (EntryKind.USAGE, -2_000, same_moment),
            (EntryKind.USAGE, -3_000, same_moment),
        ],
    )
    async with unit_of_work(create_sessionmaker(engine)) as db:
        order = await add_paid_order(db, uuid.UUID(user_id), [("nvidia-h100", 1, 2)], now=now)
        given_back = await post(
            db, order.user_id, EntryKind.UNUSED_TIME, 4_321, order_id=order.id, now=now
        )

    seen: list[dict[str, object]] = []
    answer = await api.get("/api/v1/credits/entries?limit=2", token)
    while True:
        assert_documented(api.app, answer, EntryPage)
        page = answer.json()
        seen += page["entries"]
        if page["next_cursor"] is None:
            break
        answer = await api.get(
            f"/api/v1/credits/entries?limit=2&cursor={page['next_cursor']}", token
        )

    ties = sorted(made[1:], reverse=True)  # one moment: by id, as the cursor orders them
    assert [e["id"] for e in seen] == [str(given_back.entry.id), *ties, made[0]]
    newest = seen[0]
    assert newest == {
        "id": str(given_back.entry.id),
        "kind": "unused_time",
        "amount_millicents": 4_321,
        "balance_after_millicents": 1_000_000 - 6_000 + 4_321,
        "created_at": newest["created_at"],
        "instance_id": None,
        "order_id": str(order.id),
        "payment_intent_id": None,
        "reason": None,
        "expires_at": None,
    }
    assert datetime.fromisoformat(str(newest["created_at"])) == now


async def test_a_cursor_pages_only_through_the_callers_own_ledger(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    owner = await api.sign_up(email)
    now = api.clock.now()
    await post_entries(
        engine, owner["user"]["id"], [(EntryKind.TOP_UP, 100, now), (EntryKind.TOP_UP, 200, now)]
    )
    cursor = (await api.get("/api/v1/credits/entries?limit=1", owner["access_token"])).json()[
        "next_cursor"
    ]
    stranger = await api.sign_up(f"stranger-{email}")
    answer = await api.get(f"/api/v1/credits/entries?cursor={cursor}", stranger["access_token"])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"entries": [], "next_cursor": None}


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("cursor=garbage!", id="cursor-not-base64"),
        pytest.param("cursor=bm90IGEgY3Vyc29y", id="cursor-without-separator"),
        pytest.param("cursor=" + "x" * 201, id="cursor-too-long"),
        pytest.param("limit=0", id="limit-zero"),
        pytest.param("limit=101", id="limit-over-100"),
        pytest.param("limit=many", id="limit-not-a-number"),
    ],
)
async def test_a_bad_cursor_or_limit_is_refused(api: Api, email: str, query: str) -> None:
    token = (await api.sign_up(email))["access_token"]
    answer = await api.get(f"/api/v1/credits/entries?{query}", token)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
