"""The cart: per user, merged, limited, priced from today's catalog, private."""

from __future__ import annotations

import asyncio
from typing import Any

from computebill.config import Settings
from tests.support.catalog import activate, admin_change, set_rate
from tests.support.http import Api

H100 = {"gpu": "nvidia-h100", "gpu_count": 2, "vcpus": 24, "storage_gb": 500, "hours": 10}
# 2 × $2.49 + 24 × 5 ¢ + 500 × 0.1 ¢ = $6.68 an hour; 10 hours = $66.80
H100_UNIT_TOTAL = 6680


async def add(api: Api, token: str, item: dict[str, Any]) -> Any:
    return await api.call("POST", "/api/v1/cart/items", token, item)


async def user(api: Api, email: str) -> str:
    return str((await api.sign_up(email))["access_token"])


async def test_an_item_is_priced_by_the_server(api: Api, email: str) -> None:
    token = await user(api, email)
    answer = await add(api, token, H100 | {"quantity": 2, "total_cents": 1})
    assert answer.status_code == 201
    cart = answer.json()
    [line] = cart["items"]
    assert line["region"] == "us-east-1"
    assert line["hourly_cents"] == 668
    assert line["unit_total_cents"] == H100_UNIT_TOTAL
    assert line["line_total_cents"] == 2 * H100_UNIT_TOTAL
    assert line["price_changed"] is False
    assert cart["total_cents"] == 2 * H100_UNIT_TOTAL
    assert cart["item_count"] == 2
    assert (await api.get("/api/v1/cart", token)).json() == cart


async def test_the_same_configuration_adds_up_instead_of_a_new_line(api: Api, email: str) -> None:
    token = await user(api, email)
    await add(api, token, H100)
    cart = (await add(api, token, H100 | {"quantity": 3})).json()
    assert [line["quantity"] for line in cart["items"]] == [4]
    other_region = (await add(api, token, H100 | {"region": "eu-central-1"})).json()
    assert len(other_region["items"]) == 2


async def test_quantities_stop_at_eight_and_carts_at_twenty_lines(api: Api, email: str) -> None:
    token = await user(api, email)
    await add(api, token, H100 | {"quantity": 8})
    over = await add(api, token, H100)
    assert over.status_code == 422
    assert over.json()["code"] == "cart_limit"
    assert (await add(api, token, H100 | {"quantity": 9})).status_code == 422
    for hours in range(11, 30):  # 19 more configurations: 20 lines
        assert (await add(api, token, H100 | {"hours": hours})).status_code == 201
    full = await add(api, token, H100 | {"hours": 30})
    assert full.status_code == 422
    assert "at most 20" in full.json()["detail"]


async def test_a_full_cart_still_takes_more_of_what_it_holds_and_answers_as_stored(
    api: Api, email: str
) -> None:
    token = await user(api, email)
    for hours in range(1, 21):
        assert (await add(api, token, H100 | {"hours": hours})).status_code == 201
    more = await add(api, token, H100 | {"hours": 7, "quantity": 3})
    assert more.status_code == 201
    cart = more.json()
    assert [line["hours"] for line in cart["items"]] == list(range(1, 21))  # the order added
    assert [line["quantity"] for line in cart["items"]][5:8] == [1, 4, 1]
    assert cart["item_count"] == 23
    assert cart["total_cents"] == sum(line["line_total_cents"] for line in cart["items"])
    assert (await api.get("/api/v1/cart", token)).json() == cart
    refused = await add(api, token, H100 | {"hours": 7, "quantity": 5})
    assert refused.status_code == 422
    assert refused.json()["detail"].endswith("the cart already has 4.")
    assert (await add(api, token, H100 | {"hours": 21})).status_code == 422
    assert (await api.get("/api/v1/cart", token)).json() == cart  # a refusal changes nothing


async def test_quantity_changes_and_removal(api: Api, email: str) -> None:
    token = await user(api, email)
    item_id = (await add(api, token, H100)).json()["items"][0]["id"]
    changed = await api.call("PATCH", f"/api/v1/cart/items/{item_id}", token, {"quantity": 5})
    assert changed.json()["items"][0]["line_total_cents"] == 5 * H100_UNIT_TOTAL
    too_many = await api.call("PATCH", f"/api/v1/cart/items/{item_id}", token, {"quantity": 9})
    assert too_many.status_code == 422
    removed = await api.call("DELETE", f"/api/v1/cart/items/{item_id}", token)
    assert removed.status_code == 204
    assert (await api.get("/api/v1/cart", token)).json()["items"] == []


async def test_nobody_else_can_see_or_change_an_item(api: Api, email: str) -> None:
    alice = await user(api, email)
    bob = await user(api, "bob-" + email)
    item_id = (await add(api, alice, H100)).json()["items"][0]["id"]
    assert (await api.get("/api/v1/cart", bob)).json()["items"] == []
    for method, body in (("PATCH", {"quantity": 1}), ("DELETE", None)):
        answer = await api.call(method, f"/api/v1/cart/items/{item_id}", bob, body)
        assert answer.status_code == 404
    assert (await api.get("/api/v1/cart", alice)).json()["items"][0]["quantity"] == 1


async def test_the_cart_needs_a_login(api: Api) -> None:
    assert (await api.http.get("/api/v1/cart")).status_code == 401
    assert (await api.http.post("/api/v1/cart/items", json=H100)).status_code == 401


async def test_a_rate_change_is_announced_with_old_and_new_totals(
    api: Api, email: str, settings: Settings
) -> None:
    token = await user(api, email)
    await add(api, token, H100 | {"gpu": "nvidia-h200"})
    await admin_change(settings, api.app, set_rate("nvidia-h200", 399))
    try:
        [line] = (await api.get("/api/v1/cart", token)).json()["items"]
        assert line["price_changed"] is True
        assert line["previous_line_total_cents"] == (2 * 349 + 120 + 50) * 10
        assert line["line_total_cents"] == (2 * 399 + 120 + 50) * 10
    finally:
        await admin_change(settings, api.app, set_rate("nvidia-h200", 349))


async def test_a_deactivated_model_is_refused_and_marked_unavailable(
    api: Api, email: str, settings: Settings
) -> None:
    token = await user(api, email)
    await add(api, token, H100 | {"gpu": "amd-mi325x"})
    await add(api, token, H100)
    await admin_change(settings, api.app, activate("amd-mi325x", False))
    try:
        refused = await add(api, token, H100 | {"gpu": "amd-mi325x", "hours": 2})
        assert refused.status_code == 422
        cart = (await api.get("/api/v1/cart", token)).json()
        assert [line["available"] for line in cart["items"]] == [False, True]
        assert cart["total_cents"] == H100_UNIT_TOTAL  # only what can still be bought
    finally:
        await admin_change(settings, api.app, activate("amd-mi325x", True))


async def test_concurrent_adds_never_exceed_twenty_lines(api: Api, email: str) -> None:
    token = await user(api, email)
    answers = await asyncio.gather(
        *(add(api, token, H100 | {"hours": hours}) for hours in range(100, 125))
    )
    assert sorted(a.status_code for a in answers) == [201] * 20 + [422] * 5
    assert len((await api.get("/api/v1/cart", token)).json()["items"]) == 20
