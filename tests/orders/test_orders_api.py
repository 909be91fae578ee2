"""`GET /api/v1/orders` and `/orders/{id}`: the caller's own orders only, newest first, paged by
an opaque cursor."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

import httpx
import pytest

from tests.support.shopper import A100, H100, H100_UNIT_TOTAL, Shopper


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_an_order_shows_its_snapshot_history_and_stripe_ids(
    http: httpx.AsyncClient,
) -> None:
    shopper = await Shopper(http).sign_up()
    await shopper.add(quantity=3)
    order_id, checkout_url = await shopper.checkout_url()
    order = await shopper.order(order_id)

    assert order["id"] == order_id
    assert (order["status"], order["currency"]) == ("pending", "usd")
    assert (order["total_cents"], order["refunded_cents"]) == (3 * H100_UNIT_TOTAL, 0)
    assert order["checkout_url"] == checkout_url
    assert order["checkout_session_id"].startswith("cs_test_")
    assert order["payment_intent_id"] is None
    assert (order["paid_at"], order["needs_review"], order["refunds"]) == (None, False, [])
    [line] = order["lines"]
    assert line == {
        "gpu_slug": "nvidia-h100",
        "gpu_name": "NVIDIA H100 SXM",
        "gpu_count": H100["gpu_count"],
        "vcpus": H100["vcpus"],
        "storage_gb": H100["storage_gb"],
        "hours": H100["hours"],
        "region": line["region"],
        "quantity": 3,
        "gpu_hour_cents": 249,
        "vcpu_hour_millicents": 5000,
        "storage_gb_hour_millicents": 100,
        "unit_total_cents": H100_UNIT_TOTAL,
        "line_total_cents": 3 * H100_UNIT_TOTAL,
        "image_slug": "ubuntu-24.04-cuda-12.6",  # the default: the cart line named none
        "extends_instance_id": None,  # new machines, not hours for one that runs
        "extends_instance_name": None,
    }
    [created] = order["history"]
    assert (created["from_status"], created["to_status"]) == (None, "pending")
    assert datetime.fromisoformat(created["changed_at"]).tzinfo is not None


async def test_another_users_order_is_not_found(http: httpx.AsyncClient) -> None:
    """Checklist: the answer for B's order is the answer for an order that does not exist."""
    owner = await Shopper(http).sign_up()
    await owner.add()
    order_id, _ = await owner.checkout_url()
    stranger = await Shopper(http).sign_up()

    theirs = await http.get(f"/api/v1/orders/{order_id}", headers=stranger.auth)
    nobodys = await http.get(f"/api/v1/orders/{uuid.uuid4()}", headers=stranger.auth)
    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.json() == nobodys.json()
    assert theirs.headers["content-type"] == nobodys.headers["content-type"]
    assert order_id not in theirs.text

    listed = await stranger.orders()
    assert listed.json() == {"orders": [], "next_cursor": None}
    assert (await owner.order(order_id))["id"] == order_id


async def test_orders_need_a_signed_in_user(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/orders")).status_code == 401
    assert (await http.get(f"/api/v1/orders/{uuid.uuid4()}")).status_code == 401


async def test_orders_are_listed_newest_first_one_page_at_a_time(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    created: list[str] = []
    for item in (H100, A100, H100 | {"hours": 20}):
        await shopper.add(item)  # each checkout sees a larger cart: a new order each time
        order_id, _ = await shopper.checkout_url()
        created.append(order_id)
    newest_first = created[::-1]

    everything = (await shopper.orders()).json()
    assert [o["id"] for o in everything["orders"]] == newest_first
    assert everything["next_cursor"] is None

    seen: list[str] = []
    page = (await shopper.orders(limit=1)).json()
    while True:
        assert len(page["orders"]) == 1
        seen.append(page["orders"][0]["id"])
        if page["next_cursor"] is None:
            break
        answer = await shopper.orders(limit=1, cursor=page["next_cursor"])
        assert answer.status_code == 200, answer.text
        page = answer.json()
    assert seen == newest_first

    two = (await shopper.orders(limit=2)).json()
    assert [o["id"] for o in two["orders"]] == newest_first[:2]
    rest = (await shopper.orders(limit=2, cursor=two["next_cursor"])).json()
    assert ([o["id"] for o in rest["orders"]], rest["next_cursor"]) == (newest_first[2:], None)


async def test_a_cursor_only_pages_through_the_callers_own_orders(
    http: httpx.AsyncClient,
) -> None:
    owner = await Shopper(http).sign_up()
    for item in (H100, A100):
        await owner.add(item)
        await owner.checkout_url()
    cursor = (await owner.orders(limit=1)).json()["next_cursor"]
    stranger = await Shopper(http).sign_up()
    answer = await stranger.orders(cursor=cursor)
    assert answer.status_code == 200, answer.text
    assert answer.json()["orders"] == []


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("garbage!", id="not-base64"),
        pytest.param("bm90IGEgY3Vyc29y", id="no-separator"),
        pytest.param(_cursor(b"\xff\xfe\xfd"), id="not-utf8"),
        pytest.param(_cursor(b"2026-01-01T00:00:00+00:00|not-a-uuid"), id="bad-uuid"),
        pytest.param(_cursor(b"yesterday|" + str(uuid.uuid4()).encode()), id="bad-time"),
        pytest.param(
            _cursor(b"2026-01-01T00:00:00+00:00|" + str(uuid.uuid4()).encode() + b"|x"),
            id="three-parts",
        ),
        pytest.param("x" * 201, id="too-long"),
    ],
)
async def test_a_cursor_the_api_did_not_give_out_is_refused(
    http: httpx.AsyncClient, cursor: str
) -> None:
    shopper = await Shopper(http).sign_up()
    answer = await shopper.orders(cursor=cursor)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("limit", [0, -1, 101, "many"])
async def test_a_page_size_outside_1_to_100_is_refused(
    http: httpx.AsyncClient, limit: int | str
) -> None:
    shopper = await Shopper(http).sign_up()
    assert (await shopper.orders(limit=limit)).status_code == 422


async def test_an_order_id_that_is_not_a_uuid_is_refused(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    answer = await http.get("/api/v1/orders/not-a-uuid", headers=shopper.auth)
    assert answer.status_code == 422, answer.text
