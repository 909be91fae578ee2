"""The catalog's pages: rendered on the server, priced by the same function as the API."""

from __future__ import annotations

import re

import httpx

H100 = {"gpu_count": "2", "vcpus": "24", "storage_gb": "500", "hours": "3"}


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
