"""The console's catalog: every model, offered or not (`GET /api/v1/admin/gpus`,
`/admin/catalog`), a model added (`POST /api/v1/admin/gpus` and the page's form), a rate typed in
dollars and a model taken off the catalog and back from the page. Each change is audited, shown
as before → after, and reaches quotes and carts at once."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from html import unescape
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.auth.service import Role
from computebill.cart.models import CartItem
from computebill.catalog.models import GpuModel
from computebill.catalog.schemas import GpuModelAdminList, GpuModelAdminOut
from computebill.config import Settings
from tests.console.operators import audit_entries, operator, operator_browser
from tests.console.reauthentication import submit_with_password
from tests.support.catalog import admin_change
from tests.support.http import Api
from tests.support.markup import elements, the
from tests.support.openapi import assert_documented
from tests.support.pages import Browser

CATALOG = "/admin/catalog"


def new_model(slug: str, **changes: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "vendor": "nvidia",
        "name": f"Test GPU {slug}",
        "architecture": "Testwell",
        "memory_gb": 96,
        "memory_type": "HBM3",
        "memory_bandwidth_gbps": 4000,
        "fp16_tflops": 1000,
        "fp8_tflops": None,
        "tdp_watts": 700,
        "form_factor": "SXM5",
        "vcpus_per_gpu": 16,
        "ram_gb_per_gpu": 192,
        "description": "A model the tests add.",
        "price_per_gpu_hour_cents": 399,
    } | changes


@pytest.fixture
def slug() -> str:
    return f"test-{secrets.token_hex(4)}"


async def remove_models(db: AsyncSession, slugs: list[str]) -> None:
    added = select(GpuModel.id).where(GpuModel.slug.in_(slugs)).scalar_subquery()
    await db.execute(delete(CartItem).where(CartItem.gpu_model_id.in_(added)))
    await db.execute(delete(GpuModel).where(GpuModel.slug.in_(slugs)))


@pytest.fixture
async def added_slugs(api: Api, settings: Settings) -> AsyncIterator[list[str]]:
    """Slugs a test adds: removed afterwards with the cart lines naming them, so other tests
    find the seeded catalog alone."""
    slugs: list[str] = []
    yield slugs
    await admin_change(settings, api.app, lambda db: remove_models(db, slugs))


async def admin_and_model(
    browser: Browser, api: Api, settings: Settings, slug: str, added_slugs: list[str]
) -> tuple[str, str]:
    """Sign `browser` in as an admin, and add the model `new_model(slug)` through the API as
    another: the browser's admin's address and the other's access token."""
    admin_email = await operator_browser(browser, settings, Role.ADMIN)
    admin_token, _ = await operator(api, settings, Role.ADMIN)
    added_slugs.append(slug)
    added = await api.call("POST", "/api/v1/admin/gpus", admin_token, new_model(slug))
    assert added.status_code == 201, added.text
    return admin_email, admin_token


def quote_for(slug: str) -> dict[str, Any]:
    return {"gpu": slug, "gpu_count": 1, "vcpus": 12, "storage_gb": 100, "hours": 1}


async def test_an_admin_adds_a_model_which_is_offered_at_once(
    api: Api, settings: Settings, slug: str, added_slugs: list[str]
) -> None:
    admin_token, admin_email = await operator(api, settings, Role.ADMIN)
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    assert (await api.http.get(f"/api/v1/gpus/{slug}")).status_code == 404  # cached now

    refused = await api.call("POST", "/api/v1/admin/gpus", support_token, new_model(slug))
    assert refused.status_code == 403
    added_slugs.append(slug)
    answer = await api.call("POST", "/api/v1/admin/gpus", admin_token, new_model(slug))
    assert_documented(api.app, answer, GpuModelAdminOut)
    model = answer.json()
    assert model | {"id": None, "position": None} == new_model(slug) | {
        "id": None,
        "position": None,
        "active": True,
    }

    shown = await api.http.get(f"/api/v1/gpus/{slug}")
    assert shown.status_code == 200
    assert shown.json()["price_per_gpu_hour_cents"] == 399
    assert slug in [g["slug"] for g in (await api.http.get("/api/v1/gpus")).json()["gpus"]]
    quote = await api.http.post("/api/v1/quotes", json=quote_for(slug))
    assert quote.status_code == 200
    assert quote.json()["hourly_cents"] == 399 + 60 + 10  # 12 vCPUs at 5 ¢, 100 GB at 0.1 ¢

    taken = await api.call("POST", "/api/v1/admin/gpus", admin_token, new_model(slug))
    assert taken.status_code == 409
    assert taken.json()["code"] == "gpu_model_exists"
    [entry] = await audit_entries(api, admin_token, actor=admin_email)
    assert (entry["action"], entry["target_type"], entry["target_id"]) == (
        "gpu_model.added",
        "gpu_model",
        slug,
    )
    assert entry["before"] is None
    assert entry["after"] == model


async def test_new_models_are_validated_like_changes(
    api: Api, settings: Settings, slug: str
) -> None:
    admin_token, _ = await operator(api, settings, Role.ADMIN)
    for body in (
        new_model(slug, price_per_gpu_hour_cents=0),
        new_model(slug, price_per_gpu_hour_cents=10_000_001),
        new_model(slug, price_per_gpu_hour_cents="3.99"),
        new_model(slug, vendor="intel"),
        new_model("Not A Slug"),
        new_model(slug, memory_gb=0),
        new_model(slug, vcpus_per_gpu=0),
        new_model(slug, vcpus_per_gpu=257),
        new_model(slug, ram_gb_per_gpu=4097),
        {k: v for k, v in new_model(slug).items() if k != "ram_gb_per_gpu"},
        new_model(slug, name=""),
        new_model(slug, rate=5),
    ):
        answer = await api.call("POST", "/api/v1/admin/gpus", admin_token, body)
        assert answer.status_code == 422, body
        assert answer.headers["content-type"] == "application/problem+json"
    api.clock.advance(seconds=settings.reauthenticate_after_seconds + 1)
    stale = await api.call("POST", "/api/v1/admin/gpus", admin_token, new_model(slug))
    assert stale.status_code == 403
    assert stale.json()["code"] == "reauthentication_required"
    assert (await api.http.get(f"/api/v1/gpus/{slug}")).status_code == 404


async def test_operators_list_every_model_the_inactive_too(
    api: Api, settings: Settings, slug: str, added_slugs: list[str]
) -> None:
    admin_token, _ = await operator(api, settings, Role.ADMIN)
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    added_slugs.append(slug)
    hidden = new_model(slug, active=False)
    assert (await api.call("POST", "/api/v1/admin/gpus", admin_token, hidden)).status_code == 201

    every = await api.get("/api/v1/admin/gpus", support_token)
    assert_documented(api.app, every, GpuModelAdminList)
    models = {g["slug"]: g for g in every.json()["gpus"]}
    assert models[slug]["active"] is False
    assert models["nvidia-h100"]["active"] is True
    public = (await api.http.get("/api/v1/gpus")).json()["gpus"]
    assert slug not in [g["slug"] for g in public]
    customer = (await api.sign_up(f"customer-{slug}@example.com"))["access_token"]
    assert (await api.get("/api/v1/admin/gpus", customer)).status_code == 403
    assert (await api.http.get("/api/v1/admin/gpus")).status_code == 401


async def test_the_catalog_page_is_for_operators_and_its_forms_for_admins(
    browser: Browser, other_browser: Browser, settings: Settings, email: str
) -> None:
    answer = await browser.page(CATALOG)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next={CATALOG}"
    await browser.sign_up(email)
    assert (await browser.page(CATALOG)).status_code == 403

    await operator_browser(other_browser, settings, Role.SUPPORT)
    page = await other_browser.page(CATALOG)
    assert page.status_code == 200
    rows = {row.attrs["data-model"]: row for row in elements(page.text, "data-model")}
    assert {"nvidia-h100", "amd-mi355x"} <= set(rows)
    assert "$2.49" in rows["nvidia-h100"].text
    assert elements(page.text, "data-rate-form") == []
    assert elements(page.text, "data-add-model") == []
    for path, data in (
        (f"{CATALOG}/nvidia-h100/rate", {"rate": "0.01"}),
        (f"{CATALOG}/nvidia-h100/active", {"active": "false"}),
        (CATALOG, {"slug": "support-model"}),
    ):
        refused = await other_browser.submit(path, data, form_page=CATALOG)
        assert refused.status_code == 403, path
    again = await other_browser.page(CATALOG)
    rows = {row.attrs["data-model"]: row for row in elements(again.text, "data-model")}
    assert "$2.49" in rows["nvidia-h100"].text
    assert rows["nvidia-h100"].attrs["data-active"] == "true"


async def test_a_rate_change_on_the_page_shows_before_and_after_and_reaches_carts(
    browser: Browser,
    api: Api,
    settings: Settings,
    email: str,
    slug: str,
    added_slugs: list[str],
) -> None:
    admin_email, admin_token = await admin_and_model(browser, api, settings, slug, added_slugs)
    shopper = (await api.sign_up(email))["access_token"]
    line = await api.call("POST", "/api/v1/cart/items", shopper, quote_for(slug) | {"quantity": 1})
    assert line.status_code == 201, line.text
    path = f"{CATALOG}/{slug}/rate"

    assert (await browser.http.post(path, data={"rate": "4.25"})).status_code == 403  # no CSRF
    for typed in ("4.255", "four", "-1", ""):
        refused = await browser.submit(path, {"rate": typed}, form_page=CATALOG)
        assert refused.status_code == 422, typed
        assert "like 2.49" in the(refused.text, "data-rate-error").text
    too_much = await browser.submit(path, {"rate": "100,000.01"}, form_page=CATALOG)
    assert too_much.status_code == 422
    assert "From $0.01 to $100,000.00" in the(too_much.text, "data-rate-error").text

    changed = await browser.submit(path, {"rate": "$4.25"}, form_page=CATALOG)
    assert changed.status_code == 200, changed.text
    notice = the(changed.text, "data-notice").text
    assert notice == f"{slug}: $3.99 per GPU-hour → $4.25 per GPU-hour."
    rows = {row.attrs["data-model"]: row for row in elements(changed.text, "data-model")}
    assert "$4.25" in rows[slug].text
    # The latest changes, below: this one (the model was added on another clock).
    [latest] = [
        change
        for change in elements(changed.text, "data-catalog-change")
        if change.attrs["data-catalog-change"] == slug and "→" in change.text
    ]
    assert "$3.99 per GPU-hour → $4.25 per GPU-hour" in latest.text
    assert admin_email in latest.text

    quote = await api.http.post("/api/v1/quotes", json=quote_for(slug))
    assert quote.json()["hourly_cents"] == 425 + 60 + 10
    configurator = await api.http.get(f"/gpus/{slug}")
    assert "$4.25" in configurator.text
    [item] = (await api.get("/api/v1/cart", shopper)).json()["items"]
    assert item["price_changed"] is True
    assert item["previous_line_total_cents"] == 399 + 60 + 10
    assert item["line_total_cents"] == 425 + 60 + 10
    [entry] = await audit_entries(api, admin_token, actor=admin_email)
    assert (entry["action"], entry["before"], entry["after"]) == (
        "gpu_model.changed",
        {"price_per_gpu_hour_cents": 399},
        {"price_per_gpu_hour_cents": 425},
    )

    same = await browser.submit(path, {"rate": "4.25"}, form_page=CATALOG)
    assert the(same.text, "data-notice").text == f"{slug}: nothing changed."


async def test_an_admin_takes_a_model_off_the_catalog_and_back_from_the_page(
    browser: Browser, api: Api, settings: Settings, slug: str, added_slugs: list[str]
) -> None:
    await admin_and_model(browser, api, settings, slug, added_slugs)
    path = f"{CATALOG}/{slug}/active"

    off = await browser.submit(path, {"active": "false"}, form_page=CATALOG)
    assert off.status_code == 200
    assert the(off.text, "data-notice").text == f"{slug}: offered → taken off the catalog."
    row = next(r for r in elements(off.text, "data-model") if r.attrs["data-model"] == slug)
    assert row.attrs["data-active"] == "false"
    assert "Reactivate" in row.text
    assert (await api.http.get(f"/api/v1/gpus/{slug}")).status_code == 404

    on = await browser.submit(path, {"active": "true"}, form_page=CATALOG)
    assert the(on.text, "data-notice").text == f"{slug}: taken off the catalog → offered."
    assert (await api.http.get(f"/api/v1/gpus/{slug}")).status_code == 200


def field_error(html: str, field: str) -> str:
    """The message beside a field of the add form."""
    found = re.search(rf'<span id="error-{field}"[^>]*>([^<]*)</span>', html)
    assert found, f"no error beside {field}"
    return unescape(found.group(1))


def add_form(slug: str, changes: dict[str, str] | None = None) -> dict[str, str]:
    """The add form filled in as `new_model(slug)`, with `changes`."""
    fields = new_model(slug) | {"fp8_tflops": "", "rate": "3.99"}
    del fields["price_per_gpu_hour_cents"]
    return {name: str(value) for name, value in fields.items()} | (changes or {})


async def test_an_admin_adds_a_model_from_the_page(
    browser: Browser, api: Api, settings: Settings, slug: str, added_slugs: list[str]
) -> None:
    admin_email = await operator_browser(browser, settings, Role.ADMIN)
    for changes, field, message in (
        ({"rate": "3.999"}, "rate", "like 2.49"),
        ({"rate": "0"}, "rate", "From $0.01"),
        ({"slug": "Bad Slug"}, "slug", "words joined by hyphens"),
        ({"memory_gb": "lots"}, "memory_gb", "valid integer"),
        ({"vcpus_per_gpu": "0"}, "vcpus_per_gpu", "greater than or equal to 1"),
        ({"vendor": "intel"}, "vendor", "NVIDIA or AMD"),
    ):
        refused = await browser.submit(CATALOG, add_form(slug, changes))
        assert refused.status_code == 422, changes
        assert message in field_error(refused.text, field), changes
        typed = the(refused.text, "data-add-model").find("input", name="name")
        assert typed[0]["value"] == f"Test GPU {slug}"  # what was typed comes back

    added_slugs.append(slug)
    added = await browser.submit(CATALOG, add_form(slug, {"fp8_tflops": "2000"}))
    assert added.status_code == 200, added.text
    assert the(added.text, "data-notice").text == (f"{slug}: added: $3.99 per GPU-hour, offered.")
    shown = await api.http.get(f"/api/v1/gpus/{slug}")
    assert shown.status_code == 200
    assert shown.json()["fp8_tflops"] == 2000
    assert shown.json()["price_per_gpu_hour_cents"] == 399

    taken = await browser.submit(CATALOG, add_form(slug))
    assert taken.status_code == 409
    assert "already" in field_error(taken.text, "slug")
    token, _ = await operator(api, settings, Role.SUPPORT)
    [entry] = await audit_entries(api, token, actor=admin_email)
    assert entry["action"] == "gpu_model.added"
    assert entry["after"]["fp8_tflops"] == 2000  # type: ignore[index]


async def test_a_price_change_after_15_minutes_needs_the_password(
    browser: Browser, api: Api, settings: Settings, slug: str, added_slugs: list[str]
) -> None:
    await admin_and_model(browser, api, settings, slug, added_slugs)
    browser.clock.advance(seconds=settings.reauthenticate_after_seconds + 60)
    page = await browser.page(CATALOG)
    forms = elements(page.text, "data-rate-form")
    form = next(f for f in forms if f.attrs["data-rate-form"] == slug)
    assert form.find("input", name="password", type="password")
    path = f"{CATALOG}/{slug}/rate"

    right = await submit_with_password(browser, path, {"rate": "5.00"}, form_page=CATALOG)
    assert right.status_code == 200
    assert (await api.http.get(f"/api/v1/gpus/{slug}")).json()["price_per_gpu_hour_cents"] == 500
    assert elements(right.text, "data-recent-login-field") == []
