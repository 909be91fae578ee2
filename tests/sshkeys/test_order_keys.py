"""A cart line chooses the account's SSH keys (all of them by default), checkout carries them to
the order line, and the instances made for the line get them; another account's key is a 422."""

from __future__ import annotations

from typing import Any

import httpx

from tests.sshkeys.keys import new_public_line
from tests.sshkeys.test_ssh_keys_api import add, bearer
from tests.support.http import Api
from tests.support.shopper import H100, Shopper


async def test_a_cart_line_keeps_the_keys_chosen_and_refuses_anothers(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    first = (await add(api, pair, new_public_line(), name="first")).json()
    second = (await add(api, pair, new_public_line(), name="second")).json()
    other = await api.sign_up("other-" + email)
    theirs = (await add(api, other, new_public_line())).json()

    async def add_line(**changes: Any) -> httpx.Response:
        return await api.http.post("/api/v1/cart/items", json=H100 | changes, headers=bearer(pair))

    everything = await add_line()
    assert everything.status_code == 201, everything.text
    assert everything.json()["items"][0]["ssh_key_ids"] == [first["id"], second["id"]]

    # The same configuration again: its quantity grows, and the keys are those chosen now.
    chosen = await add_line(ssh_key_ids=[second["id"]])
    [line] = chosen.json()["items"]
    assert (line["quantity"], line["ssh_key_ids"]) == (2, [second["id"]])

    refused = await add_line(hours=3, ssh_key_ids=[theirs["id"]])
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "unknown_ssh_key"
    cart = await api.http.get("/api/v1/cart", headers=bearer(pair))
    assert [item["quantity"] for item in cart.json()["items"]] == [2]


async def test_an_order_lines_instances_get_the_lines_keys(http: httpx.AsyncClient) -> None:
    shopper = await Shopper(http).sign_up()
    keys = []
    for name in ("laptop", "desktop", "build server"):
        answer = await http.post(
            "/api/v1/ssh-keys",
            json={"name": name, "public_key": new_public_line("ecdsa256")},
            headers=shopper.auth,
        )
        assert answer.status_code == 201, answer.text
        keys.append(answer.json())
    laptop, desktop, build = keys

    order_id, _ = await shopper.buy(quantity=2, ssh_key_ids=[build["id"], laptop["id"]])
    order = await shopper.wait_until(order_id, lambda o: len(o["instances"]) == 2)
    assert len(order["instances"]) == 2, order
    for instance in order["instances"]:
        answer = await http.get(f"/api/v1/instances/{instance['id']}", headers=shopper.auth)
        assert answer.status_code == 200, answer.text
        assert [(k["name"], k["fingerprint"]) for k in answer.json()["ssh_keys"]] == [
            ("build server", build["fingerprint"]),
            ("laptop", laptop["fingerprint"]),
        ]
    assert desktop["fingerprint"] not in str(order)
