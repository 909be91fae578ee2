"""The catalog's pages: home, a vendor's GPUs, and the configurator with its live price."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from computebill.auth.browser import VisitorDep, verify_csrf
from computebill.catalog import service
from computebill.catalog.api import quote_of
from computebill.catalog.models import Vendor
from computebill.deps import CatalogDep
from computebill.errors import AppError, NotFound
from computebill.web import templates
from computebill.web.rendering import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

VENDOR_NAMES = {Vendor.NVIDIA: "NVIDIA", Vendor.AMD: "AMD"}


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, catalog: CatalogDep, visitor: VisitorDep) -> HTMLResponse:
    return render(request, "home.html", {"gpus": catalog.active_models()}, visitor=visitor)


NUMERIC = ("gpu_count", "vcpus", "storage_gb", "hours")


def _chosen(catalog: service.Catalog, params: dict[str, str]) -> dict[str, Any]:
    """The configuration in the query string (None where a number is not a whole number), and
    the first offered option where one is missing."""
    policy = catalog.policy
    chosen: dict[str, Any] = {
        "gpu_count": policy.gpu_counts[0],
        "vcpus": policy.vcpu_options[0],
        "storage_gb": policy.storage_gb_options[0],
        "hours": policy.min_hours,
        "region": policy.default_region,
    }
    for field in chosen:
        raw = params.get(field)
        if raw is not None:
            chosen[field] = (int(raw) if raw.isdigit() else None) if field in NUMERIC else raw
    return chosen


def _price_context(catalog: service.Catalog, slug: str, chosen: dict[str, Any]) -> dict[str, Any]:
    if any(chosen[field] is None for field in NUMERIC):
        return {"quote": None, "error": "Choose whole numbers for every option."}
    try:
        valid = service.validate_configuration(catalog, gpu=slug, **chosen)
    except AppError as error:
        return {"quote": None, "error": error.detail}
    return {"quote": quote_of(catalog, valid), "error": None}


@router.get("/gpus/{name}", response_class=HTMLResponse)
async def gpus(
    request: Request, name: str, catalog: CatalogDep, visitor: VisitorDep
) -> HTMLResponse:
    """A vendor's catalog (`/gpus/nvidia`) or one model's configurator (`/gpus/nvidia-h100`)."""
    if name in {vendor.value for vendor in Vendor}:
        vendor = Vendor(name)
        return render(
            request,
            "catalog.html",
            {"gpus": catalog.active_models(vendor), "vendor_name": VENDOR_NAMES[vendor]},
            visitor=visitor,
        )
    model = catalog.model(name)
    if model is None or not model.active:
        raise NotFound(f"There is no GPU called {name!r} in the catalog.")
    policy = catalog.policy
    chosen = _chosen(catalog, dict(request.query_params))
    choices = [
        ("gpu_count", "GPUs", policy.gpu_counts, ""),
        ("vcpus", "vCPUs", policy.vcpu_options, ""),
        ("storage_gb", "NVMe storage", policy.storage_gb_options, " GB"),
        ("region", "Region", policy.regions, ""),
    ]
    return render(
        request,
        "configurator.html",
        {
            "gpu": model,
            "pricing": policy,
            "choices": choices,
            "chosen": chosen,
            **_price_context(catalog, model.slug, chosen),
        },
        visitor=visitor,
    )


@router.get("/gpus/{slug}/price", response_class=HTMLResponse)
async def price(request: Request, slug: str, catalog: CatalogDep) -> HTMLResponse:
    """The price box alone, for htmx to swap in as the options change."""
    chosen = _chosen(catalog, dict(request.query_params))
    return templates.TemplateResponse(request, "_price.html", _price_context(catalog, slug, chosen))
