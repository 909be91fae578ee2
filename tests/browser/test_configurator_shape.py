"""The configurator in Chromium says what the machine is: the vCPUs follow the GPU count as the
count changes, the figures are added up for it, and too few vCPUs are warned about beside the
field (its accessible description); the price stays the server's quote throughout."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.flows import price_update, quote_total
from tests.support.platform import Platform

pytestmark = pytest.mark.slow

STARVED = "12 vCPUs for 8 GPUs: data loading will starve the GPUs; this shape has 96."


async def expect_the_quote(page: Page, live: Platform, configuration: dict[str, Any]) -> None:
    total = await quote_total(live.base_url, {"gpu": "nvidia-h100", **configuration})
    await expect(page.locator("#price [data-total-cents]")).to_have_attribute(
        "data-total-cents", str(total)
    )


async def test_the_vcpus_follow_the_gpu_count_and_too_few_are_warned(
    page: Page, live: Platform
) -> None:
    await page.goto("/gpus/nvidia-h100")
    gpus = page.locator("select[name=gpu_count]")
    vcpus = page.locator("select[name=vcpus]")
    figures = page.locator("#machine-figures")
    await expect(vcpus).to_have_value("24")  # one H100's shape: 26 vCPUs, offered 24
    await expect(figures).to_contain_text("80 GB HBM3")
    await expect(figures).to_contain_text("225 GB, included")
    await expect(page.get_by_label("Region")).to_contain_text("us-east-1 · N. Virginia")
    one = {"gpu_count": 1, "vcpus": 24, "storage_gb": 100, "hours": 1}
    await expect_the_quote(page, live, one)

    async with price_update(page):
        await gpus.select_option("8")
    await expect(vcpus).to_have_value("96")  # 8 × 26 = 208: the most offered
    await expect(figures).to_contain_text("640 GB HBM3 (8 × 80 GB)")
    await expect(figures).to_contain_text("1,800 GB, included")
    await expect(page.locator("#price")).to_contain_text("1,800 GB system RAM")
    await expect(vcpus).to_have_accessible_description("")
    eight = one | {"gpu_count": 8, "vcpus": 96}
    await expect_the_quote(page, live, eight)

    async with price_update(page):
        await vcpus.select_option("12")
    await expect(vcpus).to_have_accessible_description(STARVED)
    warning = page.locator("#" + str(await vcpus.get_attribute("aria-describedby")))
    await expect(warning).to_have_attribute("role", "status")
    await expect(warning).to_be_visible()
    await expect_the_quote(page, live, eight | {"vcpus": 12})

    # Back to the shape's vCPUs: the warning goes.
    async with price_update(page):
        await gpus.select_option("2")
    await expect(vcpus).to_have_value("48")
    await expect(vcpus).to_have_accessible_description("")
    await expect_the_quote(page, live, one | {"gpu_count": 2, "vcpus": 48})
