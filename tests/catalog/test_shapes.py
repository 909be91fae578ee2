"""The configurator says what the machine is: its GPUs' figures added up for the GPU count, the
vCPUs and system RAM its shape comes with (the vCPUs follow the GPU count; fewer are allowed
with a warning), and each region's city."""

from __future__ import annotations

import json
import re
from html import unescape

import httpx
import pytest

from computebill.catalog.models import PricingPolicy
from computebill.catalog.service import Catalog
from tests.support.markup import Element, elements, the

H100_PAGE = "/gpus/nvidia-h100"
ONE_HOUR = {"storage_gb": "100", "hours": "1"}
STARVED_8 = "12 vCPUs for 8 GPUs: data loading will starve the GPUs; this shape has 96."


def select(html: str, field: str) -> Element:
    [chosen] = [e for e in elements(html, "data-choice") if e.attrs["data-choice"] == field]
    return chosen


def selected(html: str, field: str) -> str | None:
    [option] = [o for o in select(html, field).find("option") if "selected" in o]
    return option["value"]


def figures(html: str) -> dict[str, str]:
    """The machine's definition list, term → description."""
    listed = the(html, "data-machine-figures")
    assert listed.tag == "dl"
    inner = re.search(r"<dl[^>]*data-machine-figures[^>]*>(.*?)</dl>", html, re.S)
    assert inner
    pairs = re.findall(r"<dt[^>]*>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", inner.group(1), re.S)
    return {read(term): read(description) for term, description in pairs}


def read(markup: str) -> str:
    """Markup's text as a person reads it."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", markup))).strip()


async def test_the_figures_are_added_up_for_the_chosen_gpu_count(
    client: httpx.AsyncClient,
) -> None:
    eight = await client.get(H100_PAGE, params=ONE_HOUR | {"gpu_count": "8", "vcpus": "96"})
    assert eight.status_code == 200
    assert figures(eight.text) == {
        "Total VRAM": "640 GB HBM3 (8 × 80 GB)",
        "Memory bandwidth": "26,800 GB/s (8 × 3,350 GB/s)",
        "FP16/BF16 (dense)": "7,912 TFLOPS (8 × 989 TFLOPS)",
        "FP8 (dense)": "15,832 TFLOPS (8 × 1,979 TFLOPS)",
        "TDP": "5,600 W (8 × 700 W)",
        "Form factor": "SXM5",
        "System RAM": "1,800 GB, included (225 GB per GPU)",
    }
    one = figures((await client.get(H100_PAGE, params={"gpu_count": "1"})).text)
    assert one["Total VRAM"] == "80 GB HBM3"
    assert one["System RAM"] == "225 GB, included (225 GB per GPU)"
    a100 = figures((await client.get("/gpus/nvidia-a100", params={"gpu_count": "2"})).text)
    assert a100["FP8 (dense)"] == "not supported"
    assert a100["System RAM"] == "288 GB, included (144 GB per GPU)"


async def test_the_ram_is_an_included_line_of_the_price(client: httpx.AsyncClient) -> None:
    page = await client.get(H100_PAGE, params=ONE_HOUR | {"gpu_count": "8", "vcpus": "96"})
    price = re.search(r'<div id="price".*?</div>\s*</dl>', page.text, re.S)
    assert price
    assert re.search(r"<dt>1,800 GB system RAM</dt><dd[^>]*>included</dd>", price.group(0))


@pytest.mark.parametrize(
    ("gpu", "gpu_count", "vcpus"),
    [
        ("nvidia-h100", 1, 24),  # 26 per GPU: the option at or below
        ("nvidia-h100", 2, 48),
        ("nvidia-h100", 8, 96),  # 208, more than offered: the largest
        ("nvidia-a100", 1, 12),
        ("nvidia-a100", 4, 48),
    ],
)
async def test_without_a_vcpu_choice_the_vcpus_are_the_shapes(
    client: httpx.AsyncClient, gpu: str, gpu_count: int, vcpus: int
) -> None:
    page = await client.get(f"/gpus/{gpu}", params=ONE_HOUR | {"gpu_count": str(gpu_count)})
    assert selected(page.text, "vcpus") == str(vcpus)
    quote = await client.post(
        "/api/v1/quotes",
        json={"gpu": gpu, "gpu_count": gpu_count, "vcpus": vcpus, "storage_gb": 100, "hours": 1},
    )
    assert f'data-total-cents="{quote.json()["total_cents"]}"' in page.text
    assert the(page.text, "data-vcpus-shape").text == ""


async def test_the_gpu_select_carries_each_counts_shape_for_the_vcpus_to_follow(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get(H100_PAGE)
    shapes = select(page.text, "gpu_count").attrs["data-shape-vcpus"]
    assert shapes is not None
    assert json.loads(shapes) == {"1": 24, "2": 48, "4": 96, "8": 96}
    assert 'src="/static/shape.js?v=' in page.text


async def test_fewer_vcpus_than_the_shape_are_allowed_with_a_warning(
    client: httpx.AsyncClient,
) -> None:
    starved = await client.get(H100_PAGE, params=ONE_HOUR | {"gpu_count": "8", "vcpus": "12"})
    assert selected(starved.text, "vcpus") == "12"
    assert select(starved.text, "vcpus").attrs["aria-describedby"] == "vcpus-shape"
    warning = the(starved.text, "data-vcpus-shape")
    assert (warning.attrs["id"], warning.attrs["role"]) == ("vcpus-shape", "status")
    assert warning.text == STARVED_8
    assert "data-total-cents" in starved.text  # still priced: it may be bought

    enough = await client.get(H100_PAGE, params=ONE_HOUR | {"gpu_count": "8", "vcpus": "96"})
    assert the(enough.text, "data-vcpus-shape").text == ""
    one = await client.get(H100_PAGE, params=ONE_HOUR | {"gpu_count": "1", "vcpus": "12"})
    assert the(one.text, "data-vcpus-shape").text == (
        "12 vCPUs for 1 GPU: data loading will starve the GPUs; this shape has 24."
    )


async def test_the_price_update_swaps_the_figures_and_the_warning_beside_the_options(
    client: httpx.AsyncClient,
) -> None:
    fragment = await client.get(
        f"{H100_PAGE}/price", params=ONE_HOUR | {"gpu_count": "8", "vcpus": "12"}
    )
    assert fragment.text.lstrip().startswith('<div id="price"')
    listed = the(fragment.text, "data-machine-figures")
    assert (listed.attrs["id"], listed.attrs["hx-swap-oob"]) == ("machine-figures", "true")
    assert figures(fragment.text)["Total VRAM"] == "640 GB HBM3 (8 × 80 GB)"
    warning = the(fragment.text, "data-vcpus-shape")
    # Its content only: the live region on the page stays, so the change is announced.
    assert (warning.attrs["id"], warning.attrs["hx-swap-oob"]) == ("vcpus-shape", "innerHTML")
    assert warning.text == STARVED_8

    enough = await client.get(
        f"{H100_PAGE}/price", params=ONE_HOUR | {"gpu_count": "8", "vcpus": "96"}
    )
    assert the(enough.text, "data-vcpus-shape").text == ""
    unknown = await client.get("/gpus/nvidia-rtx-9090/price", params=ONE_HOUR)
    assert 'role="alert"' in unknown.text
    assert elements(unknown.text, "data-machine-figures") == []


async def test_regions_show_their_city(client: httpx.AsyncClient) -> None:
    page = await client.get(H100_PAGE, params=ONE_HOUR | {"region": "eu-central-1"})
    options = select(page.text, "region").find("option")
    assert [o["value"] for o in options] == ["us-east-1", "us-west-2", "eu-central-1"]
    shown = re.findall(r'<option value="[a-z0-9-]+"[^>]*>([^<]*)</option>', page.text)
    assert [unescape(text) for text in shown[-3:]] == [
        "us-east-1 · N. Virginia",
        "us-west-2 · Oregon",
        "eu-central-1 · Frankfurt",
    ]
    assert selected(page.text, "region") == "eu-central-1"
    assert "for 1 hour in eu-central-1 · Frankfurt" in unescape(page.text)


def test_a_region_without_a_city_is_shown_by_its_name() -> None:
    policy = PricingPolicy(region_cities={"us-east-1": "N. Virginia"})
    catalog = Catalog(models=(), images=(), policy=policy)
    assert catalog.region_label("us-east-1") == "us-east-1 · N. Virginia"
    assert catalog.region_label("ap-south-1") == "ap-south-1"
