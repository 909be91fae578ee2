"""The catalog: GPU models, the pricing policy, validated configurations and quotes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from computebill.audit import service as audit
from computebill.catalog.models import GpuModel, PricingPolicy
from computebill.catalog.pricing import Configuration, Price, Rates, price
from computebill.catalog.seed import GPU_MODELS, PRICING_POLICY
from computebill.errors import AppError, NotFound

log = structlog.get_logger(__name__)

GPU_MODEL_TARGET = "gpu_model"  # the audit log's name for a model


class InvalidConfiguration(AppError):
    status = 422
    code = "invalid_configuration"


@dataclass(frozen=True, slots=True)
class Catalog:
    """A consistent read of every model (active or not) and the pricing policy."""

    models: tuple[GpuModel, ...]
    policy: PricingPolicy

    def active_models(self, vendor: str | None = None) -> list[GpuModel]:
        return [m for m in self.models if m.active and (vendor is None or m.vendor == vendor)]

    def model(self, slug: str) -> GpuModel | None:
        return next((m for m in self.models if m.slug == slug), None)

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
    """Insert the starting catalog where it is missing; never overwrite an admin's changes."""
    for position, values in enumerate(GPU_MODELS):
        await db.execute(
            insert(GpuModel)
            .values(**values, position=position, active=True)
            .on_conflict_do_nothing(index_elements=[GpuModel.slug])
        )
    await db.execute(
        insert(PricingPolicy).values(**PRICING_POLICY).on_conflict_do_nothing(index_elements=["id"])
    )


async def load_catalog(db: AsyncSession) -> Catalog:
    models = tuple(await db.scalars(select(GpuModel).order_by(GpuModel.position, GpuModel.slug)))
    policy = await db.get(PricingPolicy, 1)
    if policy is None:
        raise RuntimeError("the pricing policy is missing; run `computebill seed`")
    for row in (*models, policy):
        db.expunge(row)  # shared across requests: detached, read-only from here on
    return Catalog(models=models, policy=policy)


@dataclass(frozen=True, slots=True)
class GpuModelChange:
    """What an operator changed of a model: the changed fields' values before and after."""

    slug: str
    before: dict[str, Any]
    after: dict[str, Any]


class GpuModelExists(AppError):
    status = 409
    code = "gpu_model_exists"


async def operator_add_gpu_model(
    db: AsyncSession, actor: audit.Actor, *, fields: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """Add a model (`fields`: a `GpuModel`'s columns, as JSON values) after the others; 409 when
    its slug is taken. Audited with the new model, which it returns. Call
    `CatalogCache.invalidate()` after the commit."""
    position = await db.scalar(select(func.coalesce(func.max(GpuModel.position) + 1, 0)))
    added = await db.scalar(
        insert(GpuModel)
        .values(**fields, position=position)
        .on_conflict_do_nothing(index_elements=[GpuModel.slug])
        .returning(GpuModel.id)
    )
    if added is None:
        raise GpuModelExists(f"There is a GPU model {fields['slug']!r} already.")
    model = {"id": str(added), **fields, "position": position}
    await audit.record(
        db,
        actor,
        audit.AuditAction.GPU_MODEL_ADDED,
        target_type=GPU_MODEL_TARGET,
        target_id=fields["slug"],
        after=model,
        now=now,
    )
    return model


async def operator_change_gpu_model(
    db: AsyncSession,
    actor: audit.Actor,
    *,
    slug: str,
    price_per_gpu_hour_cents: int | None = None,
    active: bool | None = None,
    now: datetime,
) -> GpuModelChange:
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
) -> GpuModelChange:
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
    return GpuModelChange(slug=slug, before=before, after=changed)


def _refuse(field: str, value: Any, allowed: list[Any] | str) -> InvalidConfiguration:
    shown = allowed if isinstance(allowed, str) else ", ".join(str(a) for a in allowed)
    return InvalidConfiguration(
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
