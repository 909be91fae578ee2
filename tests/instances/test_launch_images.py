"""A pay-as-you-go launch names its machine image (the default when it names none): the
instance keeps a copy of it, which a later change to the catalog leaves alone, and the provider
is asked to install it; an image not offered is a 422 and launches nothing."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from computebill.config import Settings
from computebill.db import create_sessionmaker, unit_of_work
from computebill.instances.models import Instance
from computebill.instances.schemas import InstanceDetailOut
from tests.billing.test_billing_pages import signed_up
from tests.cart.test_cart_pages import CONFIGURATOR
from tests.instances.test_pay_as_you_go_api import H100, launch
from tests.instances.test_pay_as_you_go_pages import H100 as PAGE_H100
from tests.instances.test_pay_as_you_go_pages import LAUNCH, credit, instances_of
from tests.sshkeys.test_launch_keys import funded_account, launched_machine
from tests.support.catalog import (
    SEEDED_AMD_DEFAULT_IMAGE,
    SEEDED_DEFAULT_IMAGE,
    admin_change,
    change_image,
    extra_image,
)
from tests.support.http import Api
from tests.support.markup import the
from tests.support.openapi import assert_documented
from tests.support.pages import Browser

PYTORCH_SLUG = "pytorch-2.6-cuda-12.6"
PYTORCH = {
    "slug": PYTORCH_SLUG,
    "name": "PyTorch",
    "versions": [
        {"name": "Ubuntu", "version": "24.04"},
        {"name": "CUDA", "version": "12.6"},
        {"name": "Python", "version": "3.12"},
        {"name": "PyTorch", "version": "2.6.0"},
    ],
}


async def test_a_launch_installs_the_image_it_names_and_the_provider_gets_it(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await funded_account(api, email, engine)
    token = pair["access_token"]
    made = await launch(api, token, H100 | {"image": PYTORCH["slug"]}, key="torch")
    assert made.status_code == 201, made.text
    assert made.json()["image"] == PYTORCH

    shown = await api.http.get(
        f"/api/v1/instances/{made.json()['id']}", headers={"authorization": f"Bearer {token}"}
    )
    assert_documented(api.app, shown, InstanceDetailOut)
    assert shown.json()["image"] == PYTORCH
    listed = await api.http.get("/api/v1/instances", headers={"authorization": f"Bearer {token}"})
    assert [i["image"] for i in listed.json()["instances"]] == [PYTORCH]

    machine = await launched_machine(engine, made.json()["id"])
    assert machine.image_slug == PYTORCH["slug"]
    assert machine.image_versions == ["Ubuntu 24.04", "CUDA 12.6", "Python 3.12", "PyTorch 2.6.0"]

    # The same Idempotency-Key with another image is another launch.
    other = await launch(api, token, H100 | {"image": "jax-0.5-cuda-12.6"}, key="torch")
    assert other.status_code == 409, other.text


async def test_a_launch_naming_no_image_gets_the_default(
    api: Api, email: str, engine: AsyncEngine
) -> None:
    pair = await funded_account(api, email, engine)
    made = await launch(api, pair["access_token"], H100)
    assert made.status_code == 201, made.text
    assert made.json()["image"]["slug"] == SEEDED_DEFAULT_IMAGE
    machine = await launched_machine(engine, made.json()["id"])
    assert machine.image_slug == SEEDED_DEFAULT_IMAGE
    assert machine.image_versions == ["Ubuntu 24.04", "CUDA 12.6", "cuDNN 9.5"]

    # An AMD GPU's default is ROCm, and CUDA is not offered for it.
    mi300x = H100 | {"gpu": "amd-mi300x"}
    cuda = await launch(api, pair["access_token"], mi300x | {"image": PYTORCH_SLUG})
    assert (cuda.status_code, cuda.json()["code"]) == (422, "unknown_image")
    made = await launch(api, pair["access_token"], mi300x)
    assert made.status_code == 201, made.text
    machine = await launched_machine(engine, made.json()["id"])
    assert machine.image_slug == SEEDED_AMD_DEFAULT_IMAGE
    assert machine.image_versions == ["Ubuntu 24.04", "ROCm 6.3", "MIOpen 3.3"]


async def test_an_image_not_offered_is_a_422_and_launches_nothing(
    api: Api, email: str, engine: AsyncEngine, settings: Settings
) -> None:
    pair = await funded_account(api, email, engine)
    slug = f"test-{secrets.token_hex(4)}"
    async with extra_image(settings, api.app, slug, active=False):
        for image in ("windows-95", slug):
            answer = await launch(api, pair["access_token"], H100 | {"image": image})
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            problem = answer.json()
            assert problem["code"] == "unknown_image"
            assert problem["errors"][0]["field"] == "body.image"
            assert SEEDED_DEFAULT_IMAGE in problem["errors"][0]["allowed"]
            assert slug not in problem["errors"][0]["allowed"]
    async with unit_of_work(create_sessionmaker(engine)) as db:
        made = await db.scalar(
            select(func.count()).where(Instance.user_id == uuid.UUID(pair["user"]["id"]))
        )
    assert made == 0


async def test_an_instance_keeps_what_it_was_installed_with_when_the_image_changes(
    api: Api, email: str, engine: AsyncEngine, settings: Settings
) -> None:
    pair = await funded_account(api, email, engine)
    slug = f"test-{secrets.token_hex(4)}"
    async with extra_image(settings, api.app, slug) as image:
        made = await launch(api, pair["access_token"], H100 | {"image": slug})
        assert made.status_code == 201, made.text
        newer = [{"name": "Ubuntu", "version": "24.04"}, {"name": "CUDA", "version": "13.0"}]
        await admin_change(
            settings, api.app, change_image(slug, name="Renamed", versions=newer, active=False)
        )
        shown = await api.http.get(
            f"/api/v1/instances/{made.json()['id']}",
            headers={"authorization": f"Bearer {pair['access_token']}"},
        )
        assert shown.json()["image"] == {
            "slug": slug,
            "name": image["name"],
            "versions": image["versions"],
        }
        machine = await launched_machine(engine, made.json()["id"])
        assert machine.image_versions == ["Ubuntu 24.04", "CUDA 12.8", "Triton 3.2.0"]


async def test_the_configurators_launch_installs_the_image_chosen_and_the_dashboard_says_so(
    browser: Browser, email: str, engine: AsyncEngine
) -> None:
    user_id = await signed_up(browser, email, engine)
    await credit(engine, user_id, 10_000_000)
    form_page = CONFIGURATOR + f"&image={PYTORCH['slug']}"
    page = (await browser.page(form_page)).text
    launch_form = the(page, "data-launch-form")
    assert launch_form.find("input", type="hidden", name="image", value=PYTORCH_SLUG)
    answer = await browser.submit(
        LAUNCH, PAGE_H100 | {"image": PYTORCH["slug"]}, form_page=form_page
    )
    assert answer.status_code == 303, answer.text
    [instance] = await instances_of(engine, user_id)
    assert instance.image_slug == PYTORCH["slug"]

    dashboard = (await browser.page("/dashboard")).text
    shown = the(dashboard, "data-instance-image")
    assert shown.attrs["data-instance-image"] == PYTORCH["slug"]
    assert shown.text == "PyTorch: Ubuntu 24.04 · CUDA 12.6 · Python 3.12 · PyTorch 2.6.0"

    refused = await browser.submit(LAUNCH, PAGE_H100 | {"image": "windows-95"}, form_page=form_page)
    assert refused.status_code == 422
    assert "windows-95" in refused.text
    assert len(await instances_of(engine, user_id)) == 1
