"""The catalog: GPU models, machine images, the pricing policy, validated configurations and
quotes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.audit import service as audit
from computebill.catalog.models import (
    DEFAULT_RAM_GB_PER_GPU,
    DEFAULT_VCPUS_PER_GPU,
    GpuModel,
    MachineImage,
    PricingPolicy,
)
from computebill.catalog.pricing import Configuration, Price, Rates, price
from computebill.catalog.seed import GPU_MODELS, MACHINE_IMAGES, PRICING_POLICY
from computebill.errors import AppError, NotFound

log = structlog.get_logger(__name__)

GPU_MODEL_TARGET = "gpu_model"  # the audit log's name for a model
IMAGE_TARGET = "machine_image"  # and for a machine image


class InvalidConfiguration(AppError):
    status = 422
    code = "invalid_configuration"


class UnknownImage(AppError):
    status = 422
    code = "unknown_image"


@dataclass(frozen=True, slots=True)
class Shape:
    """A machine of `gpu_count` GPUs of a model, as the clouds shape them: its vCPUs (the
    offered option at or below `vcpus_per_gpu × gpu_count`, else the smallest) and its system
    RAM follow the GPU count. The RAM is included; the vCPUs are priced as chosen."""

    gpu_count: int
    vcpus: int
    ram_gb: int

    def total(self, per_gpu: int) -> int:
        """A per-GPU figure (GB, GB/s, TFLOPS, watts) for all the machine's GPUs."""
        return per_gpu * self.gpu_count

    def starved_by(self, vcpus: int) -> bool:
        """Fewer vCPUs than the shape's: loading data will keep the GPUs waiting."""
        return vcpus < self.vcpus


@dataclass(frozen=True, slots=True)
class Catalog:
    """A consistent read of every model and machine image (active or not) and the pricing
    policy."""

    models: tuple[GpuModel, ...]
    images: tuple[MachineImage, ...]
    policy: PricingPolicy

    def active_models(self, vendor: str | None = None) -> list[GpuModel]:
        return [m for m in self.models if m.active and (vendor is None or m.vendor == vendor)]

    def model(self, slug: str) -> GpuModel | None:
        return next((m for m in self.models if m.slug == slug), None)

    def active_images(self) -> list[MachineImage]:
        return [image for image in self.images if image.active]

    def images_for(self, model: GpuModel) -> list[MachineImage]:
        """The offered images a model's machines can run: its vendor's, and those for any."""
        return [i for i in self.images if i.active and i.vendor in (None, model.vendor)]

    def image(self, slug: str) -> MachineImage | None:
        return next((image for image in self.images if image.slug == slug), None)

    def default_image(self, model: GpuModel) -> MachineImage | None:
        return next((i for i in self.images if i.is_default and i.vendor == model.vendor), None)

    def shape(self, model: GpuModel, gpu_count: int) -> Shape:
        wanted = model.vcpus_per_gpu * gpu_count
        offered = self.policy.vcpu_options
        vcpus = max((option for option in offered if option <= wanted), default=min(offered))
        return Shape(gpu_count, vcpus, model.ram_gb_per_gpu * gpu_count)

    def region_label(self, region: str) -> str:
        """ "us-east-1 · N. Virginia"; the region alone where it has no city."""
        city = self.policy.region_cities.get(region)
        return f"{region} · {city}" if city else region

    def rates_for(self, model: GpuModel) -> Rates:
        return Rates(
            gpu_hour_cents=model.price_per_gpu_hour_cents,
            vcpu_hour_millicents=self.policy.vcpu_hour_millicents,
            storage_gb_hour_millicents=self.policy.storage_gb_hour_millicents,
        )


@dataclass(frozen=True, slots=True)
class ValidConfiguration:
    model: GpuModel
    configuration: Configuration
    region: str


async def seed_catalog(db: AsyncSession) -> None:
    """Insert the starting catalog where it is missing; never overwrite an admin's changes.
    Seeded models still on the migration's generic shape, and a policy without cities, get
    the seed's."""
    for position, values in enumerate(GPU_MODELS):
        statement = insert(GpuModel).values(**values, position=position, active=True)
        await db.execute(
            statement.on_conflict_do_update(
                index_elements=[GpuModel.slug],
                set_={
                    "vcpus_per_gpu": statement.excluded.vcpus_per_gpu,
                    "ram_gb_per_gpu": statement.excluded.ram_gb_per_gpu,
                },
                where=(GpuModel.vcpus_per_gpu == DEFAULT_VCPUS_PER_GPU)
                & (GpuModel.ram_gb_per_gpu == DEFAULT_RAM_GB_PER_GPU),
            )
        )
    # A seeded default only for a vendor with none yet (an admin may have chosen one).
    has_default = set(await db.scalars(select(MachineImage.vendor).where(MachineImage.is_default)))
    for position, values in enumerate(MACHINE_IMAGES):
        await db.execute(
            insert(MachineImage)
            .values(
                **(
                    values
                    | {"is_default": values["is_default"] and values["vendor"] not in has_default}
                ),
                position=position,
                active=True,
            )
            .on_conflict_do_nothing(index_elements=[MachineImage.slug])
        )
    policy = insert(PricingPolicy).values(**PRICING_POLICY)
    await db.execute(
        policy.on_conflict_do_update(
            index_elements=["id"],
            set_={"region_cities": policy.excluded.region_cities},
            where=PricingPolicy.region_cities == text("'{}'::jsonb"),
        )
    )


async def load_catalog(db: AsyncSession) -> Catalog:
    models = tuple(await db.scalars(select(GpuModel).order_by(GpuModel.position, GpuModel.slug)))
    images = tuple(
        await db.scalars(select(MachineImage).order_by(MachineImage.position, MachineImage.slug))
    )
    policy = await db.get(PricingPolicy, 1)
    if policy is None:
        raise RuntimeError("the pricing policy is missing; run `computebill seed`")
    for row in (*models, *images, policy):
        db.expunge(row)  # shared across requests: detached, read-only from here on
    return Catalog(models=models, images=images, policy=policy)


async def installed_image(db: AsyncSession, slug: str | None, gpu_slug: str) -> MachineImage | None:
    """The image an order line's instances are installed with: the one it names, offered or not
    since (it was paid for), else the default for its GPU's vendor (None only while there is
    none)."""
    image = None
    if slug is not None:
        image = await db.scalar(select(MachineImage).where(MachineImage.slug == slug))
    if image is None:
        vendor = select(GpuModel.vendor).where(GpuModel.slug == gpu_slug).scalar_subquery()
        image = await db.scalar(
            select(MachineImage).where(MachineImage.is_default, MachineImage.vendor == vendor)
        )
    return image


def versions_label(versions: Sequence[Mapping[str, str]], separator: str = " · ") -> str:
    """An image's components for people: `Ubuntu 24.04 · CUDA 12.6 · PyTorch 2.6.0`."""
    return separator.join(f"{part['name']} {part['version']}" for part in versions)


def chosen_image(catalog: Catalog, slug: str | None, model: GpuModel) -> MachineImage | None:
    """The offered image a launch or a cart line of `model` names, or its vendor's default when
    it names none (None only while there is none). 422 `unknown_image` for one not offered, or
    made for another vendor's GPUs (a CUDA image on an AMD GPU), listing those that fit."""
    if slug is None:
        return catalog.default_image(model)
    offered = catalog.images_for(model)
    image = next((image for image in offered if image.slug == slug), None)
    if image is None:
        raise _refuse("image", slug, [image.slug for image in offered], refusal=UnknownImage)
    return image


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """What an operator changed of a model or an image: the changed fields' values before and
    after."""

    slug: str
    before: dict[str, Any]
    after: dict[str, Any]


class GpuModelExists(AppError):
    status = 409
    code = "gpu_model_exists"


async def _add_last(
    db: AsyncSession,
    actor: audit.Actor,
    entity: type[GpuModel] | type[MachineImage],
    *,
    fields: dict[str, Any],
    taken: AppError,
    action: audit.AuditAction,
    target_type: str,
    now: datetime,
) -> dict[str, Any]:
    """Insert a row of `entity` after the others (`fields`: its columns, as JSON values), audited
    with the row, which it returns; `taken` when its slug is."""
    position = await db.scalar(select(func.coalesce(func.max(entity.position) + 1, 0)))
    added = await db.scalar(
        insert(entity)
        .values(**fields, position=position)
        .on_conflict_do_nothing(index_elements=[entity.slug])
        .returning(entity.id)
    )
    if added is None:
        raise taken
    row = {"id": str(added), **fields, "position": position}
    await audit.record(
        db, actor, action, target_type=target_type, target_id=fields["slug"], after=row, now=now
    )
    return row


async def operator_add_gpu_model(
    db: AsyncSession, actor: audit.Actor, *, fields: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """Add a model (`fields`: a `GpuModel`'s columns, as JSON values) after the others; 409 when
    its slug is taken. Audited with the new model, which it returns. Call
    `CatalogCache.invalidate()` after the commit."""
    return await _add_last(
        db,
        actor,
        GpuModel,
        fields=fields,
        taken=GpuModelExists(f"There is a GPU model {fields['slug']!r} already."),
        action=audit.AuditAction.GPU_MODEL_ADDED,
        target_type=GPU_MODEL_TARGET,
        now=now,
    )


class ImageExists(AppError):
    status = 409
    code = "image_exists"


class DefaultImageRequired(AppError):
    """The default image is what launches get when they name none: it stays offered."""

    status = 409
    code = "default_image_required"


IMAGE_DEFAULT_LOCK = 0x1A6E  # the advisory lock key of moving the default image


async def operator_add_image(
    db: AsyncSession, actor: audit.Actor, *, fields: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """Add a machine image (`fields`: a `MachineImage`'s columns but `is_default`, as JSON
    values) after the others, not the default; 409 `image_exists` when its slug is taken.
    Audited with the new image, which it returns. Call `CatalogCache.invalidate()` after the
    commit."""
    return await _add_last(
        db,
        actor,
        MachineImage,
        fields=fields | {"is_default": False},
        taken=ImageExists(f"There is a machine image {fields['slug']!r} already."),
        action=audit.AuditAction.IMAGE_ADDED,
        target_type=IMAGE_TARGET,
        now=now,
    )


async def operator_change_image(
    db: AsyncSession,
    actor: audit.Actor,
    *,
    slug: str,
    name: str | None = None,
    description: str | None = None,
    versions: list[dict[str, str]] | None = None,
    active: bool | None = None,
    make_default: bool = False,
    now: datetime,
) -> CatalogChange:
    """Change an image's name, description or versions (instances made before keep what they
    were installed with), offer it or not, or make it its vendor's default (the previous one
    stays offered). 409 `default_image_required` for taking a default off the catalog, or making
    an image the default that is not offered or is for every vendor. Audited with the before
    and after (and the previous default's change) when it changed something. Call
    `CatalogCache.invalidate()` after the commit."""
    if make_default:
        # One move of the default at a time: the other waits, then finds the new default.
        await db.execute(select(func.pg_advisory_xact_lock(IMAGE_DEFAULT_LOCK)))
    image = await db.scalar(select(MachineImage).where(MachineImage.slug == slug).with_for_update())
    if image is None:
        raise NotFound(f"No machine image {slug!r}.")
    wanted = {"name": name, "description": description, "versions": versions, "active": active}
    changed: dict[str, Any] = {
        field: value
        for field, value in wanted.items()
        if value is not None and getattr(image, field) != value
    }
    if make_default and not image.is_default:
        changed["is_default"] = True
    if not changed.get("active", image.active) and (image.is_default or make_default):
        raise DefaultImageRequired(
            "The default image stays offered: make another image the default first."
            if image.is_default
            else "Offer the image before making it the default."
        )
    if make_default and image.vendor is None:
        raise DefaultImageRequired(
            "A default is one vendor's: this image is offered for every GPU, so it cannot be one."
        )
    before = {field: getattr(image, field) for field in changed}
    if changed.get("is_default"):
        previous = await db.scalar(
            select(MachineImage.slug)
            .where(MachineImage.is_default, MachineImage.vendor == image.vendor)
            .with_for_update()
        )
        if previous is not None:
            # Unset first: the unique index allows one default per vendor, checked per row.
            await db.execute(
                update(MachineImage).where(MachineImage.slug == previous).values(is_default=False)
            )
            await _audit_image_change(
                db, actor, previous, {"is_default": True}, {"is_default": False}, now=now
            )
    for field, value in changed.items():
        setattr(image, field, value)
    await db.flush()
    if changed:
        await _audit_image_change(db, actor, slug, before, changed, now=now)
    return CatalogChange(slug=slug, before=before, after=changed)


async def _audit_image_change(
    db: AsyncSession,
    actor: audit.Actor,
    slug: str,
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    now: datetime,
) -> None:
    await audit.record(
        db,
        actor,
        audit.AuditAction.IMAGE_CHANGED,
        target_type=IMAGE_TARGET,
        target_id=slug,
        before=before,
        after=after,
        now=now,
    )


async def operator_change_gpu_model(
    db: AsyncSession,
    actor: audit.Actor,
    *,
    slug: str,
    price_per_gpu_hour_cents: int | None = None,
    active: bool | None = None,
    now: datetime,
) -> CatalogChange:
    """`change_gpu_model` by an operator: audited with the before and after when it changed
    something."""
    change = await change_gpu_model(
        db, slug=slug, price_per_gpu_hour_cents=price_per_gpu_hour_cents, active=active
    )
    if change.after:
        await audit.record(
            db,
            actor,
            audit.AuditAction.GPU_MODEL_CHANGED,
            target_type=GPU_MODEL_TARGET,
            target_id=slug,
            before=change.before,
            after=change.after,
            now=now,
        )
    return change


async def change_gpu_model(
    db: AsyncSession,
    *,
    slug: str,
    price_per_gpu_hour_cents: int | None = None,
    active: bool | None = None,
) -> CatalogChange:
    """Change a model's rate (new quotes and carts price with it; carts flag `price_changed`)
    or hide it from the catalog and new carts (or show it again). Call
    `CatalogCache.invalidate()` after the commit."""
    model = await db.scalar(select(GpuModel).where(GpuModel.slug == slug).with_for_update())
    if model is None:
        raise NotFound(f"No GPU model {slug!r}.")
    wanted = {"price_per_gpu_hour_cents": price_per_gpu_hour_cents, "active": active}
    changed = {
        field: value
        for field, value in wanted.items()
        if value is not None and getattr(model, field) != value
    }
    before = {field: getattr(model, field) for field in changed}
    for field, value in changed.items():
        setattr(model, field, value)
    await db.flush()
    return CatalogChange(slug=slug, before=before, after=changed)


def _refuse(
    field: str,
    value: Any,
    allowed: list[Any] | str,
    *,
    refusal: type[AppError] = InvalidConfiguration,
) -> AppError:
    shown = allowed if isinstance(allowed, str) else ", ".join(str(a) for a in allowed)
    return refusal(
        f"{field} {value!r} is not offered; allowed: {shown}.",
        errors=[
            {
                "field": f"body.{field}",
                "message": f"must be one of: {shown}",
                "type": "not_offered",
                "allowed": allowed,
            }
        ],
    )


def validate_configuration(
    catalog: Catalog,
    *,
    gpu: str,
    gpu_count: int,
    vcpus: int,
    storage_gb: int,
    hours: int | None,
    region: str | None,
    quantity: int = 1,
    hours_field: str = "hours",
) -> ValidConfiguration:
    """Check a configuration against the catalog; the error names the field and what is allowed.
    Without hours (pay as you go with no safety stop) its configuration has 0 hours: its hourly
    rate is its price."""
    policy = catalog.policy
    model = catalog.model(gpu)
    if model is None or not model.active:
        raise _refuse("gpu", gpu, [m.slug for m in catalog.active_models()])
    for field, value, allowed in (
        ("gpu_count", gpu_count, policy.gpu_counts),
        ("vcpus", vcpus, policy.vcpu_options),
        ("storage_gb", storage_gb, policy.storage_gb_options),
    ):
        if value not in allowed:
            raise _refuse(field, value, list(allowed))
    if hours is not None and not policy.min_hours <= hours <= policy.max_hours:
        hour_range = f"whole hours from {policy.min_hours} to {policy.max_hours}"
        raise _refuse(hours_field, hours, hour_range)
    chosen_region = region if region is not None else policy.default_region
    if chosen_region not in policy.regions:
        raise _refuse("region", chosen_region, list(policy.regions))
    return ValidConfiguration(
        model=model,
        configuration=Configuration(
            gpu_count=gpu_count,
            vcpus=vcpus,
            storage_gb=storage_gb,
            hours=hours or 0,
            quantity=quantity,
        ),
        region=chosen_region,
    )


def price_valid(catalog: Catalog, valid: ValidConfiguration) -> Price:
    return price(catalog.rates_for(valid.model), valid.configuration)


class CatalogCache:
    """The catalog cached in each process, invalidated everywhere by a version number in Redis.

    A read costs one Redis GET; the database is read only when the version moved (or after
    `max_age_seconds`, a safety net should Redis lose the version key), on a session of its own
    and by one request at a time: the others that find it stale wait for that load instead of
    each reading the catalog again.
    """

    def __init__(
        self, redis: aioredis.Redis, *, namespace: str, max_age_seconds: float = 30.0
    ) -> None:
        self._redis = redis
        self._key = f"{namespace}:catalog:version"
        self._max_age = max_age_seconds
        self._cached: tuple[bytes | str | None, float, Catalog] | None = None
        self._loading = asyncio.Lock()

    async def _version(self) -> bytes | str | None:
        try:
            value: bytes | str | None = await self._redis.get(self._key)
        except RedisError as error:
            log.warning("catalog_version_unavailable", error=repr(error))
            return b"unavailable"
        return value

    def _current(self, version: bytes | str | None) -> Catalog | None:
        cached = self._cached
        if cached is None or cached[0] != version or time.monotonic() - cached[1] >= self._max_age:
            return None
        return cached[2]

    async def get(self, sessionmaker: async_sessionmaker[AsyncSession]) -> Catalog:
        version = await self._version()
        catalog = self._current(version)
        if catalog is not None:
            return catalog
        async with self._loading:
            catalog = self._current(version)  # loaded while this request waited
            if catalog is None:
                async with sessionmaker() as db:
                    catalog = await load_catalog(db)
                self._cached = (version, time.monotonic(), catalog)
            return catalog

    async def invalidate(self) -> None:
        self._cached = None
        try:
            await self._redis.incr(self._key)
        except RedisError as error:
            log.warning("catalog_invalidation_unavailable", error=repr(error))
