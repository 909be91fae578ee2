"""The public catalog, the pricing policy and quotes over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from computebill.app import create_app
from computebill.config import Settings
from tests.support.catalog import activate, admin_change, set_rate
from tests.support.http import serve

H100_QUOTE = {"gpu": "nvidia-h100", "gpu_count": 8, "vcpus": 96, "storage_gb": 2000, "hours": 10}


@pytest.fixture
async def app_and_client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_app(settings)
    async for client in serve(app):
        yield client, app


async def test_the_catalog_lists_eight_models_with_datasheet_figures(
    client: httpx.AsyncClient,
) -> None:
    gpus = (await client.get("/api/v1/gpus")).json()["gpus"]
    assert [g["slug"] for g in gpus] == [
        "nvidia-a100",
        "nvidia-h100",
        "nvidia-h200",
        "nvidia-b200",
        "amd-mi250x",
        "amd-mi300x",
        "amd-mi325x",
        "amd-mi355x",
    ]
    h100 = next(g for g in gpus if g["slug"] == "nvidia-h100")
    assert h100 | {"id": None} == {
        "id": None,
        "slug": "nvidia-h100",
        "vendor": "nvidia",
        "name": "NVIDIA H100 SXM",
        "architecture": "Hopper",
        "memory_gb": 80,
        "memory_type": "HBM3",
        "memory_bandwidth_gbps": 3350,
        "fp16_tflops": 989,
        "fp8_tflops": 1979,
        "tdp_watts": 700,
        "form_factor": "SXM5",
        "vcpus_per_gpu": 26,  # 8 × H100: 208 vCPUs
        "ram_gb_per_gpu": 225,  # and 1,800 GB of RAM
        "price_per_gpu_hour_cents": 249,
        "description": h100["description"],
    }
    rates = {g["slug"]: g["price_per_gpu_hour_cents"] for g in gpus}
    assert rates == {
        "nvidia-a100": 149,
        "nvidia-h100": 249,
        "nvidia-h200": 349,
        "nvidia-b200": 599,
        "amd-mi250x": 99,
        "amd-mi300x": 219,
        "amd-mi325x": 279,
        "amd-mi355x": 399,
    }


async def test_the_catalog_filters_by_vendor(client: httpx.AsyncClient) -> None:
    amd = (await client.get("/api/v1/gpus", params={"vendor": "amd"})).json()["gpus"]
    assert {g["vendor"] for g in amd} == {"amd"}
    assert len(amd) == 4
    bad = await client.get("/api/v1/gpus", params={"vendor": "intel"})
    assert bad.status_code == 422


async def test_one_model_by_slug_and_404_for_an_unknown_one(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/gpus/amd-mi300x")).json()["memory_gb"] == 192
    missing = await client.get("/api/v1/gpus/nvidia-rtx-9090")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_pricing_publishes_options_and_rates(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/pricing")).json() == {
        "currency": "usd",
        "vcpu_hour_millicents": 5000,
        "storage_gb_hour_millicents": 100,
        "gpu_counts": [1, 2, 4, 8],
        "vcpu_options": [12, 24, 48, 96],
        "storage_gb_options": [100, 500, 1000, 2000],
        "regions": ["us-east-1", "us-west-2", "eu-central-1"],
        "region_cities": {
            "us-east-1": "N. Virginia",
            "us-west-2": "Oregon",
            "eu-central-1": "Frankfurt",
        },
        "default_region": "us-east-1",
        "min_hours": 1,
        "max_hours": 720,
    }


async def test_a_quote_breaks_the_price_down(client: httpx.AsyncClient) -> None:
    quote = (await client.post("/api/v1/quotes", json=H100_QUOTE)).json()
    assert quote["region"] == "us-east-1"
    assert [(c["component"], c["per_hour_millicents"]) for c in quote["components"]] == [
        ("gpu", 8 * 249_000),
        ("vcpu", 96 * 5_000),
        ("storage", 2000 * 100),
        ("ram", 0),  # included in the shape
    ]
    assert quote["ram_gb"] == 8 * 225
    assert quote["components"][-1]["description"] == "1,800 GB system RAM"
    assert quote["hourly_cents"] == 2672
    assert quote["total_cents"] == 26720
    assert quote["currency"] == "usd"


async def test_client_sent_prices_are_ignored(client: httpx.AsyncClient) -> None:
    sneaky = H100_QUOTE | {"price_per_gpu_hour_cents": 1, "total_cents": 1, "hourly_cents": 1}
    quote = (await client.post("/api/v1/quotes", json=sneaky)).json()
    assert quote["total_cents"] == 26720


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        ({"gpu": "nvidia-rtx-9090"}, "gpu", None),
        ({"gpu_count": 3}, "gpu_count", [1, 2, 4, 8]),
        ({"vcpus": 13}, "vcpus", [12, 24, 48, 96]),
        ({"storage_gb": 250}, "storage_gb", [100, 500, 1000, 2000]),
        ({"hours": 721}, "hours", "whole hours from 1 to 720"),
        ({"hours": 0}, "hours", "whole hours from 1 to 720"),
        ({"region": "mars-1"}, "region", ["us-east-1", "us-west-2", "eu-central-1"]),
    ],
)
async def test_a_quote_refuses_what_is_not_offered(
    client: httpx.AsyncClient, change: dict[str, object], field: str, allowed: object
) -> None:
    answer = await client.post("/api/v1/quotes", json=H100_QUOTE | change)
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["field"] == f"body.{field}"
    if allowed is not None:
        assert error["allowed"] == allowed
    else:
        assert "nvidia-h100" in error["allowed"]


async def test_a_deactivated_model_leaves_the_catalog_at_once(
    settings: Settings, app_and_client: tuple[httpx.AsyncClient, FastAPI]
) -> None:
    client, app = app_and_client
    assert (await client.get("/api/v1/gpus/amd-mi250x")).status_code == 200  # now cached
    amd = (await client.get("/api/v1/gpus", params={"vendor": "amd"})).json()["gpus"]
    assert "amd-mi250x" in [g["slug"] for g in amd]  # the list, encoded once and kept
    await admin_change(settings, app, activate("amd-mi250x", False))
    try:
        slugs = [g["slug"] for g in (await client.get("/api/v1/gpus")).json()["gpus"]]
        assert "amd-mi250x" not in slugs
        amd = (await client.get("/api/v1/gpus", params={"vendor": "amd"})).json()["gpus"]
        assert "amd-mi250x" not in [g["slug"] for g in amd]
        assert (await client.get("/api/v1/gpus/amd-mi250x")).status_code == 404
        quote = await client.post("/api/v1/quotes", json=H100_QUOTE | {"gpu": "amd-mi250x"})
        assert quote.status_code == 422
    finally:
        await admin_change(settings, app, activate("amd-mi250x", True))
    assert (await client.get("/api/v1/gpus/amd-mi250x")).status_code == 200


async def test_a_rate_change_reaches_every_process(settings: Settings) -> None:
    """Two app instances (as two processes would be): a change made through one is seen by both."""
    first, second = create_app(settings), create_app(settings)
    async for client_a in serve(first):
        async for client_b in serve(second):
            before = (await client_b.get("/api/v1/gpus/nvidia-a100")).json()
            await admin_change(settings, first, set_rate("nvidia-a100", 155))
            try:
                after = (await client_b.get("/api/v1/gpus/nvidia-a100")).json()
                assert (before["price_per_gpu_hour_cents"], after["price_per_gpu_hour_cents"]) == (
                    149,
                    155,
                )
                assert (await client_a.get("/api/v1/gpus/nvidia-a100")).json()[
                    "price_per_gpu_hour_cents"
                ] == 155
            finally:
                await admin_change(settings, first, set_rate("nvidia-a100", 149))
