"""A cart line names its machine image (the default when it names none) and the cart shows it;
an image not offered is a 422 and adds nothing. (Checkout carries it on to the instances:
tests/orders/test_order_images.py.)"""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from computebill.config import Settings
from tests.cart.test_cart_pages import CONFIGURATOR, H100, lines
from tests.support.catalog import (
    SEEDED_AMD_DEFAULT_IMAGE,
    SEEDED_DEFAULT_IMAGE,
    admin_change,
    change_image,
    extra_image,
)
from tests.support.http import Api
from tests.support.markup import the
from tests.support.pages import Browser

JAX = "jax-0.5-cuda-12.6"


async def test_a_cart_line_keeps_the_image_chosen_and_refuses_one_not_offered(
    api: Api, email: str, settings: Settings
) -> None:
    token = (await api.sign_up(email))["access_token"]

    async def add_line(**changes: Any) -> httpx.Response:
        return await api.call("POST", "/api/v1/cart/items", token, H100 | changes)

    plain = await add_line()
    assert plain.status_code == 201, plain.text
    [line] = plain.json()["items"]
    assert (line["image"], line["image_available"]) == (SEEDED_DEFAULT_IMAGE, True)
    # The same configuration again: its quantity grows, and the image is the one chosen now.
    chosen = await add_line(image=JAX)
    [line] = chosen.json()["items"]
    assert (line["quantity"], line["image"], line["image_name"]) == (2, JAX, "JAX")

    slug = f"test-{secrets.token_hex(4)}"
    async with extra_image(settings, api.app, slug, active=False):
        for image in ("windows-95", slug):
            refused = await add_line(hours=3, image=image)
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "unknown_image"
    cart = await api.get("/api/v1/cart", token)
    assert [(item["quantity"], item["image"]) for item in cart.json()["items"]] == [(2, JAX)]


async def test_an_amd_line_gets_rocm_and_refuses_a_cuda_image(api: Api, email: str) -> None:
    token = (await api.sign_up(email))["access_token"]
    mi300x = H100 | {"gpu": "amd-mi300x"}
    refused = await api.call("POST", "/api/v1/cart/items", token, mi300x | {"image": JAX})
    assert (refused.status_code, refused.json()["code"]) == (422, "unknown_image")
    assert refused.json()["errors"][0]["allowed"] == [
        "ubuntu-24.04",
        SEEDED_AMD_DEFAULT_IMAGE,
        "pytorch-2.6-rocm-6.2",
    ]
    assert (await api.get("/api/v1/cart", token)).json()["items"] == []

    added = await api.call("POST", "/api/v1/cart/items", token, mi300x)
    assert added.status_code == 201, added.text
    [line] = added.json()["items"]
    assert (line["image"], line["image_name"]) == (
        SEEDED_AMD_DEFAULT_IMAGE,
        "Ubuntu 24.04 with ROCm",
    )


async def test_the_configurators_image_goes_into_the_cart_and_shows_there(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    added = await browser.submit(
        "/cart/items", H100 | {"image": JAX}, form_page=CONFIGURATOR + f"&image={JAX}"
    )
    assert added.status_code == 303, added.text
    page = (await browser.page("/cart")).text
    [line] = lines(page)
    shown = the(line, "data-cart-image")
    assert shown.attrs["data-cart-image"] == JAX
    assert "JAX" in shown.text
    assert "Ubuntu 24.04 · CUDA 12.6 · Python 3.12 · JAX 0.5.0" in shown.text
    assert f"image={JAX}" in line  # the configurator's link brings the choice back


async def test_a_line_whose_image_no_longer_fits_its_gpu_is_shown_unavailable(
    api: Api, browser: Browser, email: str, settings: Settings
) -> None:
    await browser.sign_up(email)
    token = browser.access_token
    slug = f"test-{secrets.token_hex(4)}"
    async with extra_image(settings, api.app, slug, vendor=None):
        mi300x = H100 | {"gpu": "amd-mi300x", "image": slug}
        added = await api.call("POST", "/api/v1/cart/items", token, mi300x)
        assert added.status_code == 201, added.text
        assert added.json()["items"][0]["image_available"] is True

        # The image becomes NVIDIA's only: the AMD line can no longer be checked out with it.
        await admin_change(settings, api.app, change_image(slug, vendor="nvidia"))
        [line] = (await api.get("/api/v1/cart", token)).json()["items"]
        assert (line["image"], line["image_available"]) == (slug, False)
        [shown] = lines((await browser.page("/cart")).text)
        assert "No longer offered" in the(shown, "data-image-unavailable").text
