"""The console's instances: every customer's, by status, GPU model and customer, a page at a
time (`GET /api/v1/admin/instances` and `/admin/instances`), and an admin's force stop from the
page, which is the API's one service call: audited, with the reason in the instance's history."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from computebill.auth.service import Role
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.instances.models import Instance
from computebill.instances.schemas import OperatorInstancePage
from computebill.instances.service import create_instances
from computebill.jobs import take_requested_jobs
from tests.console.operators import audit_entries, operator, operator_browser
from tests.console.reauthentication import submit_with_password
from tests.support.http import Api
from tests.support.markup import elements, the
from tests.support.openapi import assert_documented
from tests.support.orders import add_paid_order
from tests.support.pages import Browser

LIST = "/api/v1/admin/instances"


async def paid_instances(
    settings: Settings, user_id: str, lines: Sequence[tuple[str, int, int]], *, now: datetime
) -> list[str]:
    """The instances of a paid order of `lines` (model, quantity, hours), made and not yet
    booted (the test plays the worker): their ids."""
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            order = await add_paid_order(db, uuid.UUID(user_id), lines, now=now)
            await create_instances(db, order.id, now=now)
            take_requested_jobs(db)
            made = await db.scalars(select(Instance.id).where(Instance.order_id == order.id))
            return [str(instance_id) for instance_id in made]
    finally:
        await engine.dispose()


async def customer_with_instances(
    api: Api, settings: Settings, email: str, lines: Sequence[tuple[str, int, int]]
) -> tuple[dict[str, Any], list[str]]:
    """A new customer (as the API signs them up) and the instances of a paid order of theirs."""
    customer = await api.sign_up(email)
    made = await paid_instances(settings, customer["user"]["id"], lines, now=api.clock.now())
    return customer, made


async def listed(api: Api, token: str, query: str) -> dict[str, object]:
    answer = await api.get(f"{LIST}?{query}", token)
    assert_documented(api.app, answer, OperatorInstancePage)
    return dict(answer.json())


def ids_of(page: dict[str, object]) -> list[str]:
    instances = page["instances"]
    assert isinstance(instances, list)
    return [instance["id"] for instance in instances]


async def test_operators_list_every_customers_instances_by_filter_and_page(
    api: Api, settings: Settings, email: str
) -> None:
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    first = await api.sign_up(email)
    second = await api.sign_up(f"second-{email}")
    first_id, second_id = first["user"]["id"], second["user"]["id"]
    h100s = await paid_instances(settings, first_id, [("nvidia-h100", 2, 3)], now=api.clock.now())
    [a100] = await paid_instances(settings, second_id, [("nvidia-a100", 1, 3)], now=api.clock.now())
    stopped = await api.call(
        "POST", f"/api/v1/instances/{h100s[0]}/terminate", first["access_token"]
    )
    assert stopped.status_code == 202

    mine = await listed(api, support_token, f"customer={first_id}")
    assert sorted(ids_of(mine)) == sorted(h100s)
    assert mine["next_cursor"] is None
    shown = mine["instances"]
    assert isinstance(shown, list)
    assert {i["user_id"] for i in shown} == {first_id}
    assert all(i["gpu_slug"] == "nvidia-h100" and "created_at" in i for i in shown)
    assert ids_of(await listed(api, support_token, f"customer={first_id}&status=stopping")) == [
        h100s[0]
    ]
    assert ids_of(await listed(api, support_token, f"customer={first_id}&gpu=nvidia-a100")) == []
    assert ids_of(await listed(api, support_token, f"customer={second_id}&gpu=nvidia-a100")) == [
        a100
    ]
    everyone = ids_of(await listed(api, support_token, "status=provisioning&limit=100"))
    assert {h100s[1], a100} <= set(everyone)

    page_one = await listed(api, support_token, f"customer={first_id}&limit=1")
    assert page_one["next_cursor"]
    page_two = await listed(
        api, support_token, f"customer={first_id}&limit=1&cursor={page_one['next_cursor']}"
    )
    assert page_two["next_cursor"] is None
    assert sorted(ids_of(page_one) + ids_of(page_two)) == sorted(h100s)

    for query in ("limit=101", "limit=0", "status=sleeping", "customer=someone", "cursor=x"):
        assert (await api.get(f"{LIST}?{query}", support_token)).status_code == 422, query
    assert (await api.get(LIST, first["access_token"])).status_code == 403
    assert (await api.http.get(LIST)).status_code == 401


async def test_the_instances_page_is_for_operators_only(
    browser: Browser, settings: Settings, email: str
) -> None:
    answer = await browser.page("/admin/instances?status=running")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/admin/instances%3Fstatus%3Drunning"
    await browser.sign_up(email)
    refused = await browser.page("/admin/instances")
    assert refused.status_code == 403
    assert elements(refused.text, "data-instances") == []


async def test_support_sees_the_list_filtered_but_cannot_force_stop(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    await operator_browser(browser, settings, Role.SUPPORT)
    customer, made = await customer_with_instances(api, settings, email, [("nvidia-h200", 3, 2)])
    user_id = customer["user"]["id"]

    page = await browser.page(f"/admin/instances?customer={user_id}&gpu=nvidia-h200&limit=2")
    assert page.status_code == 200
    rows = elements(page.text, "data-instance")
    assert len(rows) == 2
    assert {row.attrs["data-instance"] for row in rows} <= set(made)
    assert {row.attrs["data-instance-status"] for row in rows} == {"provisioning"}
    links = {a.attrs["href"] for a in elements(page.text, "data-customer-link")}
    assert links == {f"/admin/customers/{user_id}"}
    assert elements(page.text, "data-force-stop") == []
    [older] = [e for e in elements(page.text, "rel") if e.attrs["rel"] == "next"]
    href = str(older.attrs["href"])  # the pager keeps the filters
    assert f"customer={user_id}" in href
    assert "gpu=nvidia-h200" in href
    rest = await browser.page(href)
    [last] = elements(rest.text, "data-instance")
    assert {row.attrs["data-instance"] for row in rows} | {last.attrs["data-instance"]} == set(made)

    refused = await browser.submit(
        f"/admin/instances/{made[0]}/stop", {"reason": "abuse"}, form_page="/admin/instances"
    )
    assert refused.status_code == 403
    bad = await browser.page("/admin/instances?customer=not-an-id")
    assert bad.status_code == 422
    assert "A customer is chosen by their id" in the(bad.text, "data-filter-error").text
    assert (await browser.page("/admin/instances?status=asleep")).status_code == 422


async def test_an_admin_force_stops_from_the_page_and_it_is_audited(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    admin_email = await operator_browser(browser, settings, Role.ADMIN)
    customer, [instance_id] = await customer_with_instances(
        api, settings, email, [("nvidia-b200", 1, 2)]
    )
    user_id = customer["user"]["id"]
    listing = f"/admin/instances?customer={user_id}"
    page = await browser.page(listing)
    form = the(page.text, "data-force-stop")
    assert form.attrs["action"] == f"/admin/instances/{instance_id}/stop"
    assert elements(page.text, "data-recent-login-field") == []  # logged in just now

    path = f"/admin/instances/{instance_id}/stop"
    no_token = await browser.http.post(path, data={"reason": "abuse"})
    assert no_token.status_code == 403
    no_reason = await browser.submit(path, {"reason": "   "}, form_page=listing)
    assert no_reason.status_code == 422
    assert the(no_reason.text, "data-stop-error").text == "Say why, in up to 160 characters."

    stopped = await browser.submit(path, {"reason": "crypto  mining"}, form_page=listing)
    assert stopped.status_code == 303
    assert stopped.headers["location"] == f"/admin/instances?stopped={instance_id}"
    after = await browser.page(stopped.headers["location"])
    assert instance_id in the(after.text, "data-notice").text
    seen = await api.get(f"/api/v1/instances/{instance_id}", customer["access_token"])
    assert seen.json()["status"] == "stopping"
    assert seen.json()["history"][-1]["reason"] == "stopped by an operator: crypto mining"
    again = await browser.page(listing)
    [row] = elements(again.text, "data-instance")
    assert row.attrs["data-instance-status"] == "stopping"
    assert elements(again.text, "data-force-stop") == []

    token, _ = await operator(api, settings, Role.SUPPORT)
    [entry] = await audit_entries(api, token, actor=admin_email)
    assert (entry["action"], entry["target_id"], entry["reason"]) == (
        "instance.stopped",
        instance_id,
        "crypto mining",
    )
    unknown = await browser.submit(
        f"/admin/instances/{uuid.uuid4()}/stop", {"reason": "x"}, form_page=listing
    )
    assert unknown.status_code == 404


async def test_a_force_stop_after_15_minutes_needs_the_password(
    browser: Browser, api: Api, settings: Settings, email: str
) -> None:
    await operator_browser(browser, settings, Role.ADMIN)
    customer, [instance_id] = await customer_with_instances(
        api, settings, email, [("amd-mi300x", 1, 2)]
    )
    user_id = customer["user"]["id"]
    browser.clock.advance(seconds=settings.reauthenticate_after_seconds + 60)
    listing = f"/admin/instances?customer={user_id}"
    page = await browser.page(listing)
    form = the(page.text, "data-force-stop")
    assert form.find("input", name="password", type="password")
    path = f"/admin/instances/{instance_id}/stop"

    right = await submit_with_password(browser, path, {"reason": "abuse"}, form_page=listing)
    assert right.status_code == 303
    seen = await api.get(f"/api/v1/instances/{instance_id}", customer["access_token"])
    assert seen.json()["status"] == "stopping"
    fresh = await browser.page(listing)
    assert elements(fresh.text, "data-recent-login-field") == []  # the password renewed it
