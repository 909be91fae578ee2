"""The catalog's pages: rendered on the server, priced by the same function as the API."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import update

from computebill.catalog.models import PricingPolicy
from tests.support.catalog import admin_change
from tests.support.markup import elements, the
from tests.support.pages import Browser

H100 = {"gpu_count": "2", "vcpus": "24", "storage_gb": "500", "hours": "3"}
HOURS_RULE = "Hours must be a whole number from 1 to 720."
NO_PRICE = "No price: hours must be a whole number from 1 to 720."


def slugs_on(html: str) -> list[str]:
    return re.findall(r'href="/gpus/((?:nvidia|amd)-[a-z0-9]+)"', html)


async def test_home_lists_every_gpu_with_its_hourly_price(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert len(set(slugs_on(page.text))) == 8
    assert "$2.49" in page.text  # H100
    assert "$0.99" in page.text  # MI250X
    assert "1,979 TFLOPS" in page.text


async def test_a_vendor_page_shows_only_that_vendor(client: httpx.AsyncClient) -> None:
    amd = (await client.get("/gpus/amd")).text
    assert set(slugs_on(amd)) == {"amd-mi250x", "amd-mi300x", "amd-mi325x", "amd-mi355x"}
    assert "192 GB HBM3" in amd


async def test_the_configurator_shows_the_servers_quote(client: httpx.AsyncClient) -> None:
    page = await client.get("/gpus/nvidia-h100", params=H100)
    quote = (
        await client.post(
            "/api/v1/quotes", json={"gpu": "nvidia-h100"} | {k: int(v) for k, v in H100.items()}
        )
    ).json()
    assert page.status_code == 200
    assert f'data-total-cents="{quote["total_cents"]}"' in page.text
    assert f'data-hourly-cents="{quote["hourly_cents"]}"' in page.text
    assert "$20.04" in page.text  # 3 h × $6.68
    assert re.search(r'<option value="2"\s+selected>', page.text)


async def test_the_price_box_updates_alone_and_explains_bad_choices(
    client: httpx.AsyncClient,
) -> None:
    fragment = await client.get("/gpus/amd-mi300x/price", params=H100 | {"gpu_count": "8"})
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="price"')
    assert "<html" not in fragment.text
    for bad in ({"gpu_count": "3"}, {"hours": "0"}, {"hours": "lots"}, {"region": "mars-1"}):
        answer = await client.get("/gpus/amd-mi300x/price", params=H100 | bad)
        assert answer.status_code == 200
        assert 'role="alert"' in answer.text


def hours_field(html: str) -> str:
    match = re.search(r'<input[^>]*\bid="hours"[^>]*>', html)
    assert match, "no hours field"
    return match.group(0)


def pressed(html: str) -> list[str]:
    """The duration presets shown pressed."""
    return [e.text for e in elements(html, "aria-pressed") if e.attrs["aria-pressed"] == "true"]


async def test_the_price_box_says_why_hours_are_refused_and_marks_the_field(
    client: httpx.AsyncClient,
) -> None:
    """What htmx swaps in as hours are typed: the price box saying why it cannot price, and
    (out of band) the error beside the field; when they are fixed, the price and no error."""
    for hours in ("0", "1000", "", "2.5", "lots"):
        answer = await client.get("/gpus/nvidia-h100/price", params=H100 | {"hours": hours})
        assert answer.status_code == 200  # htmx swaps a 200
        assert answer.text.lstrip().startswith('<div id="price"')
        assert the(answer.text, "data-no-price").text == NO_PRICE
        assert "data-total-cents" not in answer.text
        error = the(answer.text, "data-field-error")
        assert error.attrs["id"] == "hours-error"
        assert error.attrs["hx-swap-oob"] == "true"
        assert error.text == HOURS_RULE
        assert 'id="hours"' not in answer.text  # the field being typed in is left alone

    fixed = await client.get("/gpus/nvidia-h100/price", params=H100 | {"hours": "24"})
    assert "data-no-price" not in fixed.text
    assert 'data-total-cents="16032"' in fixed.text  # 24 h × $6.68
    assert the(fixed.text, "data-field-error").text == ""
    assert pressed(fixed.text) == ["24 h"]


async def test_a_duration_preset_prices_its_hours_and_sets_the_field(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/gpus/nvidia-h100", params=H100)
    presets = [(e.attrs["value"], e.text) for e in elements(page.text, "aria-pressed")]
    assert presets == [("1", "1 h"), ("8", "8 h"), ("24", "24 h"), ("168", "1 week")]
    assert all(e.attrs["name"] == "preset" for e in elements(page.text, "aria-pressed"))
    assert pressed(page.text) == []  # 3 hours: none of them

    # With htmx: the price for the preset, the hours field set to it (out of band).
    answer = await client.get("/gpus/nvidia-h100/price", params=H100 | {"preset": "168"})
    assert 'data-total-cents="112224"' in answer.text  # 168 h × $6.68
    field = hours_field(answer.text)
    assert 'value="168"' in field
    assert 'hx-swap-oob="true"' in field
    assert pressed(answer.text) == ["1 week"]

    # Without JavaScript the preset is a submit button of the options' form: the page again.
    page = await client.get("/gpus/nvidia-h100", params=H100 | {"preset": "8"})
    assert page.status_code == 200
    assert 'value="8"' in hours_field(page.text)
    assert 'data-total-cents="5344"' in page.text  # 8 h × $6.68
    assert pressed(page.text) == ["8 h"]


async def test_presets_outside_the_policys_hours_are_not_offered(browser: Browser) -> None:
    async def max_hours(hours: int) -> None:
        await admin_change(
            browser.settings,
            browser.app,
            lambda db: db.execute(update(PricingPolicy).values(max_hours=hours)),
        )

    await max_hours(100)
    try:
        page = (await browser.page("/gpus/nvidia-h100")).text
        assert [e.text for e in elements(page, "aria-pressed")] == ["1 h", "8 h", "24 h"]
        assert 'max="100"' in hours_field(page)
    finally:
        await max_hours(720)


async def test_without_javascript_bad_hours_come_back_beside_the_field_with_a_422(
    client: httpx.AsyncClient,
) -> None:
    """The "Update price" button (shown without JavaScript) sends the options' form: the page
    comes back with the field marked invalid, described by the error beside it."""
    page = await client.get("/gpus/nvidia-h100", params=H100 | {"hours": "1000"})
    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    field = hours_field(page.text)
    assert 'aria-invalid="true"' in field
    assert 'aria-describedby="hours-error"' in field
    assert 'value="1000"' in field  # as typed, to fix
    error = the(page.text, "data-field-error")
    assert error.attrs["id"] == "hours-error"
    assert error.text == HOURS_RULE
    assert the(page.text, "data-no-price").text == NO_PRICE
    assert "data-total-cents" not in page.text
    assert re.search(r'<form[^>]*id="configure"[^>]*novalidate', page.text)
    assert re.search(r'<form[^>]*id="add-to-cart"[^>]*novalidate', page.text)

    fixed = await client.get("/gpus/nvidia-h100", params=H100)
    assert fixed.status_code == 200
    assert "aria-invalid" not in hours_field(fixed.text)
    assert "aria-describedby" not in hours_field(fixed.text)
    assert the(fixed.text, "data-field-error").text == ""


async def test_an_unknown_gpu_is_a_friendly_404_page(client: httpx.AsyncClient) -> None:
    page = await client.get("/gpus/nvidia-rtx-9090")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "There is no GPU called" in page.text


async def test_pages_use_only_self_hosted_assets(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    sources = re.findall(r'(?:src|href)="([^"]+\.(?:css|js)[^"]*)"', page)
    assert sources
    assert all(s.startswith("/static/") and "?v=" in s for s in sources)
    for source in sources:
        asset = await client.get(source)
        assert asset.status_code == 200
        assert asset.content  # served, not an empty placeholder
