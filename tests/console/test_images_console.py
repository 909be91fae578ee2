"""The console's machine images: every image, offered or not (`GET /api/v1/admin/images`,
`/admin/images`), one added (`POST /api/v1/admin/images` and the page's form), its words and
versions edited, taken off the catalog and back, and made the default, from the API and the
page. Each change is audited and reaches the public list at once; the default stays offered."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from computebill.auth.service import Role
from computebill.catalog.schemas import (
    MachineImageAdminList,
    MachineImageAdminOut,
    MachineImageChangeOut,
)
from computebill.config import Settings
from tests.console.operators import audit_entries, operator, operator_browser
from tests.console.reauthentication import submit_with_password
from tests.support.catalog import (
    SEEDED_AMD_DEFAULT_IMAGE,
    SEEDED_DEFAULT_IMAGE,
    admin_change,
    new_image,
    remove_images,
)
from tests.support.http import Api
from tests.support.markup import elements, the
from tests.support.openapi import assert_documented
from tests.support.pages import Browser

IMAGES = "/admin/images"


@pytest.fixture
async def slug(api: Api, settings: Settings) -> AsyncIterator[str]:
    """The slug of an image a test adds: removed afterwards, and the seeded default put back, so
    other tests find the seeded images alone."""
    added = f"test-{secrets.token_hex(4)}"
    yield added
    await admin_change(settings, api.app, lambda db: remove_images(db, [added]))


async def public_images(api: Api) -> dict[str, dict[str, Any]]:
    answer = await api.http.get("/api/v1/images")
    return {image["slug"]: image for image in answer.json()["images"]}


async def test_an_admin_adds_edits_and_moves_the_default_and_each_is_audited(
    api: Api, settings: Settings, slug: str
) -> None:
    admin_token, admin_email = await operator(api, settings, Role.ADMIN)
    support_token, _ = await operator(api, settings, Role.SUPPORT)
    refused = await api.call("POST", "/api/v1/admin/images", support_token, new_image(slug))
    assert refused.status_code == 403

    added = await api.call("POST", "/api/v1/admin/images", admin_token, new_image(slug))
    assert_documented(api.app, added, MachineImageAdminOut)
    assert added.json() | {"position": None} == new_image(slug) | {
        "is_default": False,
        "position": None,
    }
    assert (await public_images(api))[slug]["versions"] == new_image(slug)["versions"]
    taken = await api.call("POST", "/api/v1/admin/images", admin_token, new_image(slug))
    assert (taken.status_code, taken.json()["code"]) == (409, "image_exists")

    path = f"/api/v1/admin/images/{slug}"
    versions = [{"name": "Ubuntu", "version": "24.04"}, {"name": "CUDA", "version": "12.9"}]
    edited = await api.call("PATCH", path, admin_token, {"name": "Triton", "versions": versions})
    assert_documented(api.app, edited, MachineImageChangeOut)
    assert edited.json() == {
        "slug": slug,
        "before": {"name": f"Test image {slug}", "versions": new_image(slug)["versions"]},
        "after": {"name": "Triton", "versions": versions},
    }
    assert (await public_images(api))[slug]["name"] == "Triton"

    made_default = await api.call("PATCH", path, admin_token, {"is_default": True})
    assert made_default.json()["after"] == {"is_default": True}
    shown = await public_images(api)
    # NVIDIA's default moved; AMD's stays.
    assert [s for s, image in shown.items() if image["is_default"]] == [
        SEEDED_AMD_DEFAULT_IMAGE,
        slug,
    ]
    for_every_gpu = await api.call(
        "PATCH", "/api/v1/admin/images/ubuntu-24.04", admin_token, {"is_default": True}
    )
    assert (for_every_gpu.status_code, for_every_gpu.json()["code"]) == (
        409,
        "default_image_required",
    )
    kept_on = await api.call("PATCH", path, admin_token, {"active": False})
    assert (kept_on.status_code, kept_on.json()["code"]) == (409, "default_image_required")
    assert slug in await public_images(api)

    # Entries of one instant (the test's clock stands still) come in no particular order.
    entries = await audit_entries(api, admin_token, actor=admin_email)
    [addition] = [e for e in entries if e["action"] == "machine_image.added"]
    assert (addition["target_id"], addition["before"]) == (slug, None)
    assert addition["after"] == added.json() | {"id": addition["after"]["id"]}  # type: ignore[index]
    recorded = sorted(
        json.dumps([e["action"], e["target_id"], e["before"], e["after"]], sort_keys=True)
        for e in entries
        if e is not addition
    )
    assert recorded == sorted(
        json.dumps(entry, sort_keys=True)
        for entry in (
            [
                "machine_image.changed",
                slug,
                {"name": f"Test image {slug}", "versions": new_image(slug)["versions"]},
                {"name": "Triton", "versions": versions},
            ],
            ["machine_image.changed", slug, {"is_default": False}, {"is_default": True}],
            [
                "machine_image.changed",
                SEEDED_DEFAULT_IMAGE,
                {"is_default": True},
                {"is_default": False},
            ],
        )
    )

    # Back to the seeded default: this image may then leave the catalog.
    back = await api.call(
        "PATCH", f"/api/v1/admin/images/{SEEDED_DEFAULT_IMAGE}", admin_token, {"is_default": True}
    )
    assert back.status_code == 200, back.text
    off = await api.call("PATCH", path, admin_token, {"active": False})
    assert off.json()["after"] == {"active": False}
    assert slug not in await public_images(api)
    every = await api.get("/api/v1/admin/images", support_token)
    assert_documented(api.app, every, MachineImageAdminList)
    assert {i["slug"]: i["active"] for i in every.json()["images"]}[slug] is False
    inactive_default = await api.call("PATCH", path, admin_token, {"is_default": True})
    assert inactive_default.status_code == 409


async def test_changes_are_validated_and_need_a_recent_login(
    api: Api, settings: Settings, slug: str
) -> None:
    admin_token, _ = await operator(api, settings, Role.ADMIN)
    customer = (await api.sign_up(f"customer-{slug}@example.com"))["access_token"]
    assert (await api.get("/api/v1/admin/images", customer)).status_code == 403
    assert (await api.http.get("/api/v1/admin/images")).status_code == 401
    for body in (
        new_image("Not A Slug"),
        new_image(slug, versions=[]),
        new_image(slug, versions=[{"name": "Ubuntu", "version": "24 04"}]),
        new_image(slug, name=""),
        new_image(slug, is_default=True),
        new_image(slug, vendor="intel"),
    ):
        answer = await api.call("POST", "/api/v1/admin/images", admin_token, body)
        assert answer.status_code == 422, body
        assert answer.headers["content-type"] == "application/problem+json"
    for patch in ({}, {"is_default": False}, {"name": ""}):
        answer = await api.call(
            "PATCH", f"/api/v1/admin/images/{SEEDED_DEFAULT_IMAGE}", admin_token, patch
        )
        assert answer.status_code == 422, patch
    unknown = await api.call(
        "PATCH", "/api/v1/admin/images/windows-95", admin_token, {"active": False}
    )
    assert unknown.status_code == 404
    api.clock.advance(seconds=settings.reauthenticate_after_seconds + 1)
    stale = await api.call("POST", "/api/v1/admin/images", admin_token, new_image(slug))
    assert stale.status_code == 403
    assert stale.json()["code"] == "reauthentication_required"
    assert slug not in await public_images(api)


async def test_the_images_page_is_for_operators_and_its_forms_for_admins(
    browser: Browser, other_browser: Browser, settings: Settings, email: str
) -> None:
    answer = await browser.page(IMAGES)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/login?next={IMAGES}"
    await browser.sign_up(email)
    assert (await browser.page(IMAGES)).status_code == 403

    await operator_browser(other_browser, settings, Role.SUPPORT)
    page = await other_browser.page(IMAGES)
    assert page.status_code == 200
    rows = {row.attrs["data-image"]: row for row in elements(page.text, "data-image")}
    assert rows[SEEDED_DEFAULT_IMAGE].attrs["data-default"] == "true"
    assert "Ubuntu 24.04 · CUDA 12.6 · cuDNN 9.5" in rows[SEEDED_DEFAULT_IMAGE].text
    assert rows[SEEDED_AMD_DEFAULT_IMAGE].attrs["data-default"] == "true"
    for slug, vendor, words in (
        (SEEDED_DEFAULT_IMAGE, "nvidia", "For NVIDIA GPUs"),
        (SEEDED_AMD_DEFAULT_IMAGE, "amd", "For AMD GPUs"),
        ("ubuntu-24.04", "", "For every GPU"),
    ):
        assert rows[slug].find("p", **{"data-image-vendor": vendor}), slug
        assert words in rows[slug].text
    assert elements(page.text, "data-edit-image") == []
    assert elements(page.text, "data-add-image") == []
    for path, data in (
        (f"{IMAGES}/ubuntu-24.04/active", {"active": "false"}),
        (f"{IMAGES}/ubuntu-24.04/default", {}),
        (IMAGES, {"slug": "support-image"}),
    ):
        refused = await other_browser.submit(path, data, form_page=IMAGES)
        assert refused.status_code == 403, path


def image_form(slug: str, changes: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "slug": slug,
        "name": "Triton",
        "description": "Triton kernels on CUDA.",
        "versions": "Ubuntu 24.04, CUDA 12.8, Triton 3.2.0",
        "vendor": "nvidia",
    } | (changes or {})


async def test_an_admin_manages_images_from_the_page(
    browser: Browser, api: Api, settings: Settings, slug: str
) -> None:
    admin_email = await operator_browser(browser, settings, Role.ADMIN)
    for changes, message in (
        ({"versions": "Ubuntu"}, "name and version"),
        ({"slug": "Bad Slug"}, "words joined by hyphens"),
        ({"name": ""}, "at least 1 character"),
        ({"vendor": "intel"}, "NVIDIA, AMD, or every GPU."),
    ):
        refused = await browser.submit(IMAGES, image_form(slug, changes), form_page=IMAGES)
        assert refused.status_code == 422, changes
        assert message in the(refused.text, "data-add-image").text, changes

    added = await browser.submit(IMAGES, image_form(slug), form_page=IMAGES)
    assert added.status_code == 200, added.text
    assert the(added.text, "data-notice").text == f"{slug}: added: offered."
    assert (await public_images(api))[slug]["versions"][2] == {
        "name": "Triton",
        "version": "3.2.0",
    }

    edited = await browser.submit(
        f"{IMAGES}/{slug}",
        {"name": "Triton", "description": "Triton kernels.", "versions": "Ubuntu 24.04, CUDA 12.9"},
        form_page=IMAGES,
    )
    assert edited.status_code == 200, edited.text
    assert the(edited.text, "data-notice").text == (
        f"{slug}: Triton kernels on CUDA. → Triton kernels.; "
        "Ubuntu 24.04 · CUDA 12.8 · Triton 3.2.0 → Ubuntu 24.04 · CUDA 12.9."
    )
    bad = await browser.submit(
        f"{IMAGES}/{slug}", {"name": "Triton", "description": "", "versions": "x"}, form_page=IMAGES
    )
    assert bad.status_code == 422
    edit_form = next(
        f for f in elements(bad.text, "data-edit-image") if f.attrs["data-edit-image"] == slug
    )
    assert "name and version" in edit_form.text

    made_default = await browser.submit(f"{IMAGES}/{slug}/default", {}, form_page=IMAGES)
    assert the(made_default.text, "data-notice").text == (f"{slug}: not the default → the default.")
    kept = await browser.submit(f"{IMAGES}/{slug}/active", {"active": "false"}, form_page=IMAGES)
    assert kept.status_code == 409
    assert "make another image the default first" in the(kept.text, "data-notice").text
    back = await browser.submit(f"{IMAGES}/{SEEDED_DEFAULT_IMAGE}/default", {}, form_page=IMAGES)
    assert back.status_code == 200
    every_gpu = next(
        row
        for row in elements(back.text, "data-image")
        if row.attrs["data-image"] == "ubuntu-24.04"
    )
    assert [f for f in every_gpu.find("form") if "data-default-form" in f] == []  # no button
    refused = await browser.submit(f"{IMAGES}/ubuntu-24.04/default", {}, form_page=IMAGES)
    assert refused.status_code == 409
    assert "offered for every GPU" in the(refused.text, "data-notice").text
    off = await browser.submit(f"{IMAGES}/{slug}/active", {"active": "false"}, form_page=IMAGES)
    assert the(off.text, "data-notice").text == f"{slug}: offered → taken off the catalog."
    assert slug not in await public_images(api)
    latest = elements(off.text, "data-image-change")
    assert {c.attrs["data-image-change"] for c in latest} >= {slug, SEEDED_DEFAULT_IMAGE}
    assert admin_email in latest[0].text

    token, _ = await operator(api, settings, Role.SUPPORT)
    actions = [str(e["action"]) for e in await audit_entries(api, token, actor=admin_email)]
    # The edit, two moves of the default (two images each), and the image taken off.
    assert sorted(actions) == ["machine_image.added"] + ["machine_image.changed"] * 6


async def test_a_change_after_15_minutes_needs_the_password(
    browser: Browser, settings: Settings
) -> None:
    await operator_browser(browser, settings, Role.ADMIN)
    browser.clock.advance(seconds=settings.reauthenticate_after_seconds + 60)
    page = await browser.page(IMAGES)
    form = next(
        f
        for f in elements(page.text, "data-edit-image")
        if f.attrs["data-edit-image"] == "jax-0.5-cuda-12.6"
    )
    assert form.find("input", name="password", type="password")
    same = {
        "name": "JAX",
        "description": "JAX with its CUDA 12 plugin, Flax and Optax in Python 3.12.",
        "versions": "Ubuntu 24.04, CUDA 12.6, Python 3.12, JAX 0.5.0",
    }
    right = await submit_with_password(
        browser, f"{IMAGES}/jax-0.5-cuda-12.6", same, form_page=IMAGES
    )
    assert right.status_code == 200
    assert the(right.text, "data-notice").text == "jax-0.5-cuda-12.6: nothing changed."
