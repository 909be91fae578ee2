"""Machine images: seeded once (an admin's default kept), listed publicly when offered, and
offered on the configurator as an accessible radio group that works without JavaScript."""

from __future__ import annotations

import secrets

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.catalog.models import MachineImage
from computebill.catalog.schemas import MachineImageList
from computebill.catalog.service import installed_image
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker, unit_of_work
from computebill.seed import seed_database
from tests.support.catalog import (
    SEEDED_AMD_DEFAULT_IMAGE,
    SEEDED_DEFAULT_IMAGE,
    admin_change,
    change_image,
    extra_image,
    remove_images,
)
from tests.support.http import Api
from tests.support.markup import the
from tests.support.openapi import assert_documented

# What an NVIDIA GPU's machines can run, and an AMD GPU's: each vendor's, and the driver only.
FOR_NVIDIA = [
    "ubuntu-24.04-cuda-12.6",
    "ubuntu-22.04-cuda-12.4",
    "pytorch-2.6-cuda-12.6",
    "jax-0.5-cuda-12.6",
    "ubuntu-24.04",
]
FOR_AMD = ["ubuntu-24.04", "ubuntu-24.04-rocm-6.3", "pytorch-2.6-rocm-6.2"]
SEEDED = [*FOR_NVIDIA, *FOR_AMD[1:]]
DEFAULTS = [SEEDED_DEFAULT_IMAGE, SEEDED_AMD_DEFAULT_IMAGE]


async def images_in_database(settings: Settings) -> list[tuple[str, bool, str]]:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as db:
            rows = await db.execute(
                select(MachineImage.slug, MachineImage.is_default, MachineImage.name).order_by(
                    MachineImage.position
                )
            )
            return [(row.slug, row.is_default, row.name) for row in rows]
    finally:
        await engine.dispose()


async def test_seeding_adds_the_images_once_and_keeps_an_admins_default_and_words(
    api: Api, settings: Settings
) -> None:
    seeded = await images_in_database(settings)
    assert [slug for slug, _, _ in seeded] == SEEDED
    assert [slug for slug, is_default, _ in seeded if is_default] == DEFAULTS

    await admin_change(settings, api.app, change_image(SEEDED_DEFAULT_IMAGE, is_default=False))
    await admin_change(settings, api.app, change_image("jax-0.5-cuda-12.6", is_default=True))
    await admin_change(settings, api.app, change_image("ubuntu-24.04", name="Plain Ubuntu"))
    try:
        await seed_database(settings)
        await seed_database(settings)
        after = await images_in_database(settings)
        assert [slug for slug, _, _ in after] == SEEDED
        assert [slug for slug, is_default, _ in after if is_default] == [
            "jax-0.5-cuda-12.6",
            SEEDED_AMD_DEFAULT_IMAGE,
        ]
        assert ("ubuntu-24.04", False, "Plain Ubuntu") in after
    finally:
        await admin_change(settings, api.app, change_image("ubuntu-24.04", name="Ubuntu 24.04"))
        await admin_change(settings, api.app, lambda db: remove_images(db, []))


async def test_an_order_line_naming_no_image_is_installed_with_its_vendors_default(
    db_session: AsyncSession,
) -> None:
    for gpu, default in (
        ("nvidia-h100", SEEDED_DEFAULT_IMAGE),
        ("amd-mi300x", SEEDED_AMD_DEFAULT_IMAGE),
    ):
        image = await installed_image(db_session, None, gpu)
        assert image is not None
        assert image.slug == default
    named = await installed_image(db_session, "ubuntu-24.04", "amd-mi300x")
    assert named is not None
    assert named.slug == "ubuntu-24.04"


async def test_the_offered_images_are_listed_publicly_with_their_versions(
    api: Api, settings: Settings
) -> None:
    slug = f"test-{secrets.token_hex(4)}"
    async with extra_image(settings, api.app, slug, active=False):
        answer = await api.http.get("/api/v1/images")
        assert_documented(api.app, answer, MachineImageList)
        images = {image["slug"]: image for image in answer.json()["images"]}
        assert list(images) == SEEDED  # not the one taken off
        assert images["pytorch-2.6-cuda-12.6"]["versions"] == [
            {"name": "Ubuntu", "version": "24.04"},
            {"name": "CUDA", "version": "12.6"},
            {"name": "Python", "version": "3.12"},
            {"name": "PyTorch", "version": "2.6.0"},
        ]
        assert [s for s, image in images.items() if image["is_default"]] == DEFAULTS
        assert "active" not in images[SEEDED_DEFAULT_IMAGE]
        assert [images[s]["vendor"] for s in ("jax-0.5-cuda-12.6", "ubuntu-24.04")] == [
            "nvidia",
            None,
        ]
        assert images["pytorch-2.6-rocm-6.2"]["vendor"] == "amd"

    # For one model: what its machines can run.
    for gpu, offered in (("nvidia-h100", FOR_NVIDIA), ("amd-mi300x", FOR_AMD)):
        answer = await api.http.get("/api/v1/images", params={"gpu": gpu})
        assert [image["slug"] for image in answer.json()["images"]] == offered
    unknown = await api.http.get("/api/v1/images", params={"gpu": "nvidia-b200x"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")


async def test_the_configurator_offers_the_images_with_the_default_chosen(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/gpus/nvidia-h100")
    assert page.status_code == 200
    picker = the(page.text, "data-image-picker")
    assert picker.tag == "fieldset"
    assert picker.text.startswith("Machine image")  # its legend
    radios = picker.find("input", type="radio", name="image")
    assert [radio["value"] for radio in radios] == FOR_NVIDIA
    assert [radio["value"] for radio in radios if "checked" in radio] == [SEEDED_DEFAULT_IMAGE]
    labels = {label["for"] for label in picker.find("label")}
    assert {radio["id"] for radio in radios} == labels
    assert "Ubuntu 24.04 · CUDA 12.6 · Python 3.12 · PyTorch 2.6.0" in picker.text

    # Without JavaScript the choice travels in the query string to the forms' hidden fields.
    chosen = await client.get("/gpus/nvidia-h100", params={"image": "jax-0.5-cuda-12.6"})
    radios = the(chosen.text, "data-image-picker").find("input", type="radio")
    assert [radio["value"] for radio in radios if "checked" in radio] == ["jax-0.5-cuda-12.6"]
    assert chosen.text.count('<input type="hidden" name="image" value="jax-0.5-cuda-12.6">') == 2
    unknown = await client.get("/gpus/nvidia-h100", params={"image": "windows-95"})
    radios = the(unknown.text, "data-image-picker").find("input", type="radio")
    assert [radio["value"] for radio in radios if "checked" in radio] == [SEEDED_DEFAULT_IMAGE]

    # An AMD GPU's: ROCm, its default chosen; a CUDA image named in the link is not offered.
    amd = await client.get("/gpus/amd-mi300x", params={"image": "pytorch-2.6-cuda-12.6"})
    radios = the(amd.text, "data-image-picker").find("input", type="radio")
    assert [radio["value"] for radio in radios] == FOR_AMD
    assert [radio["value"] for radio in radios if "checked" in radio] == [SEEDED_AMD_DEFAULT_IMAGE]
    assert "Ubuntu 24.04 · ROCm 6.3 · MIOpen 3.3" in amd.text
    assert "CUDA" not in the(amd.text, "data-image-picker").text
