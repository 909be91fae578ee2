"""How long the app takes to answer each page, measured from outside over loopback: warm, 20
GETs each, as a customer with a paid order, a running instance and an item in the cart.

Reported (printed at the end of the run and written to the artifacts), not asserted: timings
on a shared machine are no pass/fail criterion. What is asserted is that every page answers."""

from __future__ import annotations

import asyncio
import re
import statistics
import time

import httpx
import pytest

from tests.browser.chromium import ARTIFACTS, TIMINGS
from tests.browser.flows import H100, PASSWORD, fresh_email
from tests.support.http import AppClient
from tests.support.mailbox import VERIFY_EMAIL, emailed_token
from tests.support.platform import Platform
from tests.support.stripe import pay_by_card

pytestmark = pytest.mark.slow

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
ROUNDS, WARM_UP = 20, 3


async def post_form(
    http: httpx.AsyncClient, path: str, data: dict[str, object], form_page: str
) -> httpx.Response:
    page = await http.get(form_page)
    match = CSRF_INPUT.search(page.text)
    assert match, f"{form_page} has no CSRF field"
    return await http.post(path, data={"csrf_token": match.group(1), **data})


async def a_customer_with_everything(http: AppClient) -> tuple[str, str]:
    """Signs up, buys the H100s, waits for the instance to run and puts another item in the
    cart; the checkout session and the order's id."""
    email = fresh_email()
    answer = await post_form(http, "/signup", {"email": email, "password": PASSWORD}, "/signup")
    assert answer.status_code == 303, answer.text
    token = await emailed_token(http.settings, email, VERIFY_EMAIL)
    answer = await post_form(
        http, "/verify-email", {"token": token}, f"/verify-email?token={token}"
    )
    assert answer.status_code == 200, answer.text
    item = dict(H100)
    answer = await post_form(http, "/cart/items", item, form_page="/gpus/nvidia-h100")
    assert answer.status_code == 303, answer.text
    answer = await post_form(http, "/checkout", {}, form_page="/cart")
    assert answer.status_code == 303, answer.text
    paid = await asyncio.to_thread(pay_by_card, answer.headers["location"], "4242424242424242")
    assert paid.status_code == 303, paid.text
    success = paid.headers["location"]
    session_id = str(httpx.URL(success).params["session_id"])
    deadline = time.monotonic() + 30
    while 'data-order-status="paid"' not in (page := await http.get(success)).text:
        assert time.monotonic() < deadline, page.text
        await asyncio.sleep(0.5)
    order_id = re.search(
        r'href="/account/orders/([0-9a-f-]{36})"', (await http.get("/account/orders")).text
    )
    assert order_id
    while 'data-instance-status="running"' not in (page := await http.get("/dashboard")).text:
        assert time.monotonic() < deadline, page.text
        await asyncio.sleep(0.5)
    answer = await post_form(
        http, "/cart/items", {**item, "hours": 5}, form_page="/gpus/nvidia-h100"
    )
    assert answer.status_code == 303, answer.text
    return session_id, order_id.group(1)


async def timed(client: httpx.AsyncClient, path: str) -> tuple[float, float]:
    """(median, p95) in ms of `ROUNDS` GETs after `WARM_UP` ones; every one must answer 200."""
    times = []
    for attempt in range(WARM_UP + ROUNDS):
        started = time.perf_counter()
        answer = await client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
        if attempt >= WARM_UP:
            times.append(elapsed)
    return statistics.median(times), statistics.quantiles(times, n=20)[-1]


async def test_page_server_times(live: Platform) -> None:
    async with (
        AppClient(live.settings, base_url=live.base_url, timeout=30) as http,
        httpx.AsyncClient(base_url=live.base_url, timeout=30) as anonymous,
    ):
        session_id, order_id = await a_customer_with_everything(http)
        options = "&".join(f"{k}={v}" for k, v in H100.items() if k != "gpu")
        pages = {
            "/": "/",
            "/gpus/nvidia": "/gpus/nvidia",
            "/gpus/nvidia-h100": f"/gpus/nvidia-h100?{options}",
            "/gpus/nvidia-h100/price": f"/gpus/nvidia-h100/price?{options}",
            "/cart": "/cart",
            "/checkout/success": f"/checkout/success?session_id={session_id}",
            "/dashboard": "/dashboard",
            "/dashboard/instances": "/dashboard/instances",
            "/account": "/account",
            "/account/orders": "/account/orders",
            "/account/orders/{id}": f"/account/orders/{order_id}",
            "/login (signed out)": "/login",
        }
        for name, path in pages.items():
            TIMINGS[name] = await timed(anonymous if "signed out" in name else http, path)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "server-times.txt").write_text(
        "".join(f"{name}\tmedian {m:.1f} ms\tp95 {p:.1f} ms\n" for name, (m, p) in TIMINGS.items())
    )
