"""Catalog, pricing and quotes: public, no login needed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from computebill.audit import service as audit
from computebill.auth.dependencies import ClientDep, CurrentAdminWithRecentLogin, CurrentStaff
from computebill.catalog import service
from computebill.catalog.models import Vendor
from computebill.catalog.schemas import (
    ConfigurationIn,
    GpuModelAdminList,
    GpuModelAdminOut,
    GpuModelChangeOut,
    GpuModelIn,
    GpuModelList,
    GpuModelOut,
    GpuModelPatch,
    MachineImageAdminList,
    MachineImageAdminOut,
    MachineImageChangeOut,
    MachineImageIn,
    MachineImageList,
    MachineImageOut,
    MachineImagePatch,
    PriceComponent,
    PricingOut,
    QuoteOut,
)
from computebill.db import commit
from computebill.deps import CatalogCacheDep, CatalogDep, ClockDep, PublisherDep, SessionDep
from computebill.errors import NotFound
from computebill.jobs import JobPublisher

router = APIRouter(prefix="/api/v1", tags=["catalog"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class _EncodedGpuLists:
    """`GET /gpus` answers, encoded once per catalog snapshot and vendor: the list changes only
    when the catalog is reloaded, and building and encoding it was most of the request's work."""

    def __init__(self) -> None:
        self._catalog: service.Catalog | None = None
        self._bodies: dict[Vendor | None, bytes] = {}

    def body(self, catalog: service.Catalog, vendor: Vendor | None) -> bytes:
        if catalog is not self._catalog:
            self._catalog, self._bodies = catalog, {}
        body = self._bodies.get(vendor)
        if body is None:
            models = [GpuModelOut.model_validate(m) for m in catalog.active_models(vendor)]
            body = self._bodies[vendor] = GpuModelList(gpus=models).model_dump_json().encode()
        return body


_gpu_lists = _EncodedGpuLists()


@router.get("/gpus", response_model=GpuModelList)
async def list_gpus(
    catalog: CatalogDep, vendor: Annotated[Vendor | None, Query()] = None
) -> Response:
    return Response(_gpu_lists.body(catalog, vendor), media_type="application/json")


@router.get("/gpus/{slug}", response_model=GpuModelOut)
async def get_gpu(slug: str, catalog: CatalogDep) -> GpuModelOut:
    model = catalog.model(slug)
    if model is None or not model.active:
        raise NotFound(f"No GPU model {slug!r} in the catalog.")
    return GpuModelOut.model_validate(model)


@router.get("/images", response_model=MachineImageList)
async def list_images(
    catalog: CatalogDep, gpu: Annotated[str | None, Query(max_length=40)] = None
) -> MachineImageList:
    """The machine images offered, in the catalog's order; with `gpu`, those that model's
    machines can run (its vendor's and those for every GPU). Launches and cart lines name one by
    its slug (`image`), or get their GPU vendor's default."""
    if gpu is None:
        images = catalog.active_images()
    else:
        model = catalog.model(gpu)
        if model is None or not model.active:
            raise NotFound(f"No GPU model {gpu!r} in the catalog.")
        images = catalog.images_for(model)
    return MachineImageList(images=[MachineImageOut.model_validate(image) for image in images])


@router.get("/pricing", response_model=PricingOut)
async def pricing(catalog: CatalogDep) -> PricingOut:
    return PricingOut.model_validate(catalog.policy, from_attributes=True)


def quote_of(catalog: service.Catalog, valid: service.ValidConfiguration) -> QuoteOut:
    quoted = service.price_valid(catalog, valid)
    model, configuration = valid.model, valid.configuration
    policy = catalog.policy
    ram_gb = catalog.shape(model, configuration.gpu_count).ram_gb
    return QuoteOut(
        gpu=model.slug,
        gpu_count=configuration.gpu_count,
        vcpus=configuration.vcpus,
        storage_gb=configuration.storage_gb,
        ram_gb=ram_gb,
        hours=configuration.hours,
        region=valid.region,
        components=[
            PriceComponent(
                component="gpu",
                description=f"{configuration.gpu_count} × {model.name}",
                per_hour_millicents=quoted.gpu_hour_millicents,
            ),
            PriceComponent(
                component="vcpu",
                description=f"{configuration.vcpus} vCPUs",
                per_hour_millicents=quoted.vcpu_hour_millicents,
            ),
            PriceComponent(
                component="storage",
                description=f"{configuration.storage_gb} GB NVMe",
                per_hour_millicents=quoted.storage_hour_millicents,
            ),
            PriceComponent(
                component="ram",
                description=f"{ram_gb:,} GB system RAM",
                per_hour_millicents=quoted.ram_hour_millicents,
            ),
        ],
        hourly_millicents=quoted.hourly_millicents,
        hourly_cents=quoted.hourly_cents,
        total_cents=quoted.line_total_cents,
        currency=policy.currency,
    )


def validate_body(
    catalog: service.Catalog, body: ConfigurationIn, *, quantity: int = 1
) -> service.ValidConfiguration:
    """The configuration a request body names, checked against the catalog."""
    return service.validate_configuration(
        catalog,
        gpu=body.gpu,
        gpu_count=body.gpu_count,
        vcpus=body.vcpus,
        storage_gb=body.storage_gb,
        hours=body.hours,
        region=body.region,
        quantity=quantity,
    )


@router.post("/quotes", response_model=QuoteOut)
async def create_quote(body: ConfigurationIn, catalog: CatalogDep) -> QuoteOut:
    return quote_of(catalog, validate_body(catalog, body))


async def publish_catalog_change(
    db: AsyncSession, publisher: JobPublisher, catalog_cache: service.CatalogCache
) -> None:
    """Commit an operator's catalog change, then have every process reload the catalog (after
    the commit: a process reloading sooner would cache the old rows)."""
    await commit(db, publisher)
    await catalog_cache.invalidate()


@dataclass(frozen=True, slots=True)
class OperatorCatalogChange:
    """An admin's catalog change through the API (the recent login checked): the service
    call's session, actor and time, and the publishing of what it changed."""

    db: AsyncSession
    publisher: JobPublisher
    catalog_cache: service.CatalogCache
    actor: audit.Actor
    now: datetime

    async def publish(self) -> None:
        await publish_catalog_change(self.db, self.publisher, self.catalog_cache)


async def _operator_catalog_change(
    admin: CurrentAdminWithRecentLogin,
    db: SessionDep,
    publisher: PublisherDep,
    catalog_cache: CatalogCacheDep,
    clock: ClockDep,
    client: ClientDep,
) -> OperatorCatalogChange:
    return OperatorCatalogChange(
        db=db,
        publisher=publisher,
        catalog_cache=catalog_cache,
        actor=await audit.signed_in_actor(db, admin.user_id, client),
        now=clock.now(),
    )


CatalogChangeDep = Annotated[OperatorCatalogChange, Depends(_operator_catalog_change)]


@admin_router.get("/gpus", response_model=GpuModelAdminList)
async def every_gpu_model(staff: CurrentStaff, catalog: CatalogDep) -> GpuModelAdminList:
    """Every model, those taken off the catalog too, in the catalog's order. Admins and
    support."""
    return GpuModelAdminList(gpus=[GpuModelAdminOut.model_validate(m) for m in catalog.models])


@admin_router.post("/gpus", status_code=status.HTTP_201_CREATED, response_model=GpuModelAdminOut)
async def add_gpu_model(
    body: GpuModelIn,
    change: CatalogChangeDep,
) -> GpuModelAdminOut:
    """Add a GPU model; every process offers it at once (unless it is added inactive). 409
    `gpu_model_exists` when the slug is taken. Admins with a recent login; audited."""
    model = await service.operator_add_gpu_model(
        change.db,
        change.actor,
        fields=body.model_dump(mode="json"),
        now=change.now,
    )
    await change.publish()
    return GpuModelAdminOut.model_validate(model)


@admin_router.patch("/gpus/{slug}", response_model=GpuModelChangeOut)
async def change_gpu_model(
    slug: Annotated[str, Path(max_length=40)],
    body: GpuModelPatch,
    change: CatalogChangeDep,
) -> GpuModelChangeOut:
    """Change a model's rate (new quotes and carts use it; carts show `price_changed`) or take
    it off the catalog and put it back; every process sees it at once. Admins with a recent
    login; the audit log keeps the before and after."""
    changed = await service.operator_change_gpu_model(
        change.db,
        change.actor,
        slug=slug,
        price_per_gpu_hour_cents=body.price_per_gpu_hour_cents,
        active=body.active,
        now=change.now,
    )
    await change.publish()
    return GpuModelChangeOut(slug=slug, before=changed.before, after=changed.after)


@admin_router.get("/images", response_model=MachineImageAdminList)
async def every_image(staff: CurrentStaff, catalog: CatalogDep) -> MachineImageAdminList:
    """Every machine image, those not offered too, in the catalog's order. Admins and
    support."""
    return MachineImageAdminList(
        images=[MachineImageAdminOut.model_validate(image) for image in catalog.images]
    )


@admin_router.post(
    "/images", status_code=status.HTTP_201_CREATED, response_model=MachineImageAdminOut
)
async def add_image(
    body: MachineImageIn,
    change: CatalogChangeDep,
) -> MachineImageAdminOut:
    """Add a machine image, last in the catalog's order; offered at once unless added
    inactive. 409 `image_exists` when the slug is taken. Admins with a recent login; audited."""
    image = await service.operator_add_image(
        change.db,
        change.actor,
        fields=body.model_dump(mode="json"),
        now=change.now,
    )
    await change.publish()
    return MachineImageAdminOut.model_validate(image)


@admin_router.patch("/images/{slug}", response_model=MachineImageChangeOut)
async def change_image(
    slug: Annotated[str, Path(max_length=40)],
    body: MachineImagePatch,
    change: CatalogChangeDep,
) -> MachineImageChangeOut:
    """Change an image's name, description or versions (instances made before keep theirs),
    offer it or not, or make it its vendor's default (`is_default: true`). 409
    `default_image_required` for taking a default off the catalog, or for making an image for
    every GPU a default. Admins with a recent
    login; the audit log keeps the before and after."""
    changed = await service.operator_change_image(
        change.db,
        change.actor,
        slug=slug,
        name=body.name,
        description=body.description,
        versions=(None if body.versions is None else [v.model_dump() for v in body.versions]),
        active=body.active,
        make_default=bool(body.is_default),
        now=change.now,
    )
    await change.publish()
    return MachineImageChangeOut(slug=slug, before=changed.before, after=changed.after)
