"""The catalog's pages: home, a vendor's GPUs, and the configurator with its live price."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from computebill.audit import service as audit
from computebill.auth.browser import (
    AdminWithRecentLogin,
    Customer,
    RecentLoginDep,
    StaffCustomer,
    Visitor,
    VisitorDep,
    verify_csrf,
)
from computebill.auth.dependencies import ClientDep
from computebill.catalog import service
from computebill.catalog.api import publish_catalog_change, quote_of
from computebill.catalog.models import MAX_GPU_RATE_CENTS, GpuModel, Vendor
from computebill.catalog.schemas import (
    GpuModelIn,
    GpuModelPatch,
    MachineImageIn,
    MachineImagePatch,
)
from computebill.deps import (
    CatalogCacheDep,
    CatalogDep,
    ClockDep,
    PublisherDep,
    SessionDep,
)
from computebill.errors import NotFound
from computebill.jobs import JobPublisher
from computebill.money import cents_from_text, format_money
from computebill.web import templates
from computebill.web.rendering import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

VENDOR_NAMES = {Vendor.NVIDIA: "NVIDIA", Vendor.AMD: "AMD"}


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, catalog: CatalogDep, visitor: VisitorDep) -> HTMLResponse:
    return render(request, "home.html", {"gpus": catalog.active_models()}, visitor=visitor)


NUMERIC = ("gpu_count", "vcpus", "storage_gb", "hours")
# Durations offered as one press beside the hours field, as (hours, label); those outside the
# pricing policy's hours are not offered.
DURATION_PRESETS = ((1, "1 h"), (8, "8 h"), (24, "24 h"), (168, "1 week"))


def _chosen(
    catalog: service.Catalog, model: GpuModel | None, params: Mapping[str, str]
) -> dict[str, Any]:
    """The configuration in the query string or form (None where a number is not a whole
    number); where an option is missing, the first offered one, but the vCPUs: the shape's for
    the GPU count. A duration preset pressed (`preset`, its hours) stands for the hours typed."""
    policy = catalog.policy
    chosen: dict[str, Any] = {
        "gpu_count": policy.gpu_counts[0],
        "vcpus": policy.vcpu_options[0],
        "storage_gb": policy.storage_gb_options[0],
        "hours": policy.min_hours,
        "region": policy.default_region,
    }
    typed = {**params, "hours": params["preset"]} if params.get("preset") else params
    for field in chosen:
        raw = typed.get(field)
        if raw is not None:
            raw = raw.strip()
            chosen[field] = (int(raw) if raw.isdigit() else None) if field in NUMERIC else raw
    if "vcpus" not in params and model is not None:
        chosen["vcpus"] = catalog.shape(model, _shaped_count(catalog, chosen)).vcpus
    return chosen


def _shaped_count(catalog: service.Catalog, chosen: dict[str, Any]) -> int:
    """The GPU count the machine's figures are shown for: the chosen one, or one GPU's while the
    chosen one is not offered."""
    count = chosen["gpu_count"]
    return count if count in catalog.policy.gpu_counts else 1


def _offered(catalog: service.Catalog, slug: str) -> GpuModel | None:
    model = catalog.model(slug)
    return model if model is not None and model.active else None


@dataclass(frozen=True, slots=True)
class Checked:
    """A configuration as the configurator's form sends it, checked as the cart checks it:
    valid, or refused, with the field the page shows the refusal beside (`hours`; `form` for
    the model and the other options, which the page offers only as offered) and why, in
    words."""

    chosen: dict[str, Any]
    valid: service.ValidConfiguration | None
    refused: str | None = None
    error: str = ""


def check_configuration(
    catalog: service.Catalog, gpu: str, params: Mapping[str, str], *, quantity: int = 1
) -> Checked:
    """The one check of the configurator's price box, its Add to cart and the cart's add."""
    policy = catalog.policy
    chosen = _chosen(catalog, _offered(catalog, gpu), params)
    hours_rule = f"hours must be a whole number from {policy.min_hours} to {policy.max_hours}."
    if chosen["hours"] is None:
        return Checked(chosen, None, "hours", hours_rule)
    if any(chosen[field] is None for field in NUMERIC):
        return Checked(chosen, None, "form", "every option must be a whole number.")
    try:
        valid = service.validate_configuration(catalog, gpu=gpu, quantity=quantity, **chosen)
    except service.InvalidConfiguration as error:
        field = str(error.errors[0]["field"]) if error.errors else ""
        if field == "body.hours":
            return Checked(chosen, None, "hours", hours_rule)
        return Checked(chosen, None, "form", error.detail)
    return Checked(chosen, valid)


def _checked_context(
    catalog: service.Catalog, model: GpuModel | None, checked: Checked
) -> dict[str, Any]:
    """What the price box and the duration field show of a check, and the machine's figures
    and vCPU warning beside the options."""
    policy = catalog.policy
    shape = None if model is None else catalog.shape(model, _shaped_count(catalog, checked.chosen))
    vcpus = checked.chosen["vcpus"]
    return {
        "gpu": model,
        "shape": shape,
        # Fewer vCPUs than the shape's: the warning beside the vCPUs says so.
        "starved": shape is not None and vcpus is not None and shape.starved_by(vcpus),
        "quote": None if checked.valid is None else quote_of(catalog, checked.valid),
        "region_label": catalog.region_label(checked.chosen["region"]),
        "error": checked.error,
        "hours_error": checked.error if checked.refused == "hours" else "",
        "presets": [
            (hours, label)
            for hours, label in DURATION_PRESETS
            if policy.min_hours <= hours <= policy.max_hours
        ],
        "chosen": checked.chosen,
        "pricing": policy,
    }


def configurator_page(
    request: Request,
    catalog: service.Catalog,
    visitor: Visitor,
    slug: str,
    params: Mapping[str, str],
    *,
    add_error: str | None = None,
) -> HTMLResponse:
    """A model's configurator, priced as `params` configure it; a configuration refused says
    why beside its field and in the price box, with a 422 (the form comes back to be fixed)."""
    model = _offered(catalog, slug)
    if model is None:
        raise NotFound(f"There is no GPU called {slug!r} in the catalog.")
    policy = catalog.policy
    checked = check_configuration(catalog, model.slug, params)
    choices = [
        ("gpu_count", "GPUs", [(count, str(count)) for count in policy.gpu_counts]),
        ("vcpus", "vCPUs", [(vcpus, str(vcpus)) for vcpus in policy.vcpu_options]),
        ("storage_gb", "NVMe storage", [(gb, f"{gb} GB") for gb in policy.storage_gb_options]),
        ("region", "Region", [(region, catalog.region_label(region)) for region in policy.regions]),
    ]
    images = catalog.images_for(model)
    default = catalog.default_image(model)
    asked = params.get("image")
    return render(
        request,
        "configurator.html",
        {
            "choices": choices,
            # Each GPU count's shape of vCPUs, which the vCPUs follow as the count changes.
            "shape_vcpus": {
                count: catalog.shape(model, count).vcpus for count in policy.gpu_counts
            },
            "images": [(image, service.versions_label(image.versions)) for image in images],
            # The image the query string names, if offered; else the default.
            "chosen_image": (
                asked
                if any(image.slug == asked for image in images)
                else (default.slug if default else None)
            ),
            "add_error": add_error,
            **_checked_context(catalog, model, checked),
        },
        visitor=visitor,
        status_code=200 if checked.valid else 422,
    )


def refused_configuration(
    request: Request,
    catalog: service.Catalog,
    visitor: Visitor,
    gpu: str,
    params: Mapping[str, str],
    checked: Checked,
    *,
    message: str,
) -> HTMLResponse:
    """The configurator's Add to cart refused: for htmx the message beside the button, the
    field's error and the price box's reason out of band (a 200, for htmx to swap); without
    JavaScript the configurator again with the same, and the refusal's 422."""
    if request.headers.get("hx-request") == "true":
        context = _checked_context(catalog, _offered(catalog, gpu), checked) | {
            "add_error": message
        }
        return render(request, "_price_update.html", context, visitor=visitor)
    return configurator_page(request, catalog, visitor, gpu, params, add_error=message)


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
    return configurator_page(request, catalog, visitor, name, request.query_params)


@router.get("/gpus/{slug}/price", response_class=HTMLResponse)
async def price(request: Request, slug: str, catalog: CatalogDep) -> HTMLResponse:
    """The price box, for htmx to swap in as the options change, with the duration's error and
    presets, the machine's figures and the vCPU warning out of band (and the hours field, when a
    preset was pressed)."""
    checked = check_configuration(catalog, slug, request.query_params)
    context = _checked_context(catalog, _offered(catalog, slug), checked) | {
        "preset_pressed": bool(request.query_params.get("preset")),
        "add_error": None,
    }
    return templates.TemplateResponse(request, "_price_update.html", context)


# The operator's console: the whole catalog, and an admin's changes to it.
OPERATOR_CATALOG = "/admin/catalog"
RECENT_CHANGES = 20  # audit entries under the catalog
RATE_FORMAT = "Give the rate in dollars and cents, like 2.49."
RATE_RANGE = f"From $0.01 to {format_money(MAX_GPU_RATE_CENTS)} per GPU-hour."
# The add form's fields, as `GpuModelIn` names them (the rate is typed in dollars).
ADD_FIELDS = (
    "slug",
    "vendor",
    "name",
    "architecture",
    "memory_gb",
    "memory_type",
    "memory_bandwidth_gbps",
    "fp16_tflops",
    "fp8_tflops",
    "tdp_watts",
    "form_factor",
    "vcpus_per_gpu",
    "ram_gb_per_gpu",
    "description",
    "rate",
)
FIELD_RULES = {
    "slug": "Lower-case letters and digits, words joined by hyphens, like nvidia-h100.",
    "vendor": "Choose NVIDIA or AMD.",
}
FIGURES = frozenset(
    {
        "memory_gb",
        "memory_bandwidth_gbps",
        "fp16_tflops",
        "fp8_tflops",
        "tdp_watts",
        "vcpus_per_gpu",
        "ram_gb_per_gpu",
    }
)


def _shown(field: str, value: Any) -> str:
    if field == "price_per_gpu_hour_cents" and isinstance(value, int):
        return f"{format_money(value)} per GPU-hour"
    if field == "active":
        return "offered" if value else "taken off the catalog"
    if field == "is_default":
        return "the default" if value else "not the default"
    if field == "versions" and isinstance(value, list):
        return service.versions_label(value)
    return str(value)


def change_words(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """An audit entry's change to a model or an image, for people: `$2.49 per GPU-hour → $2.56
    per GPU-hour`; a model added, by what it costs and whether it is offered (an image: whether
    it is offered)."""
    if not before:
        added = after or {}
        return "added: " + ", ".join(
            _shown(field, added[field])
            for field in ("price_per_gpu_hour_cents", "active")
            if field in added
        )
    return "; ".join(
        f"{_shown(field, value)} → {_shown(field, (after or {}).get(field))}"
        for field, value in before.items()
    )


def _refusals(error: ValidationError) -> dict[str, str]:
    """A refused form's messages by field (the rate's in dollars)."""
    refused: dict[str, str] = {}
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "form"
        if field == "price_per_gpu_hour_cents":
            refused.setdefault("rate", RATE_RANGE)
        else:
            refused.setdefault(field, FIELD_RULES.get(field, problem["msg"]))
    return refused


@dataclass(frozen=True, slots=True)
class ConsolePage:
    """What the console's catalog pages (the models', the images') show besides their rows: the
    latest changes, the notice of what a form did, and the add form as typed, with its
    refusals."""

    request: Request
    operator: Customer
    db: AsyncSession
    recent_login: bool
    notice: str | None
    add_typed: dict[str, str] | None
    add_errors: dict[str, str] | None

    async def render(
        self, template: str, target_type: str, rows: dict[str, Any], status_code: int
    ) -> HTMLResponse:
        entries = await audit.latest_of_target_type(
            await self.db.connection(), target_type=target_type, limit=RECENT_CHANGES
        )
        context = rows | {
            "changes": [(entry, change_words(entry.before, entry.after)) for entry in entries],
            "recent_login": self.recent_login,
            "notice": self.notice,
            "add_typed": self.add_typed or {},
            "add_errors": self.add_errors or {},
        }
        return render(
            self.request,
            template,
            context,
            visitor=self.operator.visitor,
            status_code=status_code,
        )


async def _operator_catalog(
    request: Request,
    operator: Customer,
    db: AsyncSession,
    recent_login: bool,
    *,
    notice: str | None = None,
    rate_error: tuple[str, str] | None = None,
    add_typed: dict[str, str] | None = None,
    add_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The catalog as the database has it now (a change just committed included)."""
    catalog = await service.load_catalog(db)
    context = {
        "models": catalog.models,
        "typed_rates": {
            model.slug: "{}.{:02d}".format(*divmod(model.price_per_gpu_hour_cents, 100))
            for model in catalog.models
        },
        "policy": catalog.policy,
        "vendors": [vendor.value for vendor in Vendor],
        "rate_error": rate_error,
    }
    page = ConsolePage(request, operator, db, recent_login, notice, add_typed, add_errors)
    return await page.render("admin_catalog.html", service.GPU_MODEL_TARGET, context, status_code)


@router.get(OPERATOR_CATALOG, response_class=HTMLResponse)
async def operator_catalog(
    request: Request, staff: StaffCustomer, db: SessionDep, recent_login: RecentLoginDep
) -> HTMLResponse:
    """Every model with its rate and whether it is offered, the latest changes; admins get the
    forms to change them and to add a model."""
    return await _operator_catalog(request, staff, db, recent_login)


# A console page of the catalog, as the database has it now, with what a form did:
# (request, operator, db, recent_login, *, status_code, **context).
OperatorPage = Callable[..., Awaitable[HTMLResponse]]


@dataclass(frozen=True, slots=True)
class CatalogWrite:
    """An admin's catalog form (the recent login checked): the service call's actor and time,
    and the page that answers it."""

    request: Request
    admin: Customer
    db: AsyncSession
    publisher: JobPublisher
    catalog_cache: service.CatalogCache
    actor: audit.Actor
    now: datetime
    page: OperatorPage = _operator_catalog  # the GPU models' page, or the images'

    async def refused(self, status_code: int, **context: Any) -> HTMLResponse:
        """The page again with a form's refusal."""
        return await self.page(
            self.request, self.admin, self.db, True, status_code=status_code, **context
        )

    async def done(self, notice: str) -> HTMLResponse:
        """Publish the change made to every process, and show the page with what changed."""
        await publish_catalog_change(self.db, self.publisher, self.catalog_cache)
        return await self.page(self.request, self.admin, self.db, True, notice=notice)


async def _catalog_write(
    request: Request,
    admin: AdminWithRecentLogin,
    db: SessionDep,
    publisher: PublisherDep,
    catalog_cache: CatalogCacheDep,
    clock: ClockDep,
    client: ClientDep,
) -> CatalogWrite:
    return CatalogWrite(
        request=request,
        admin=admin,
        db=db,
        publisher=publisher,
        catalog_cache=catalog_cache,
        actor=await audit.signed_in_actor(db, admin.user_id, client),
        now=clock.now(),
    )


CatalogWriteDep = Annotated[CatalogWrite, Depends(_catalog_write)]


def _change_notice(change: service.CatalogChange) -> str:
    if not change.after:
        return f"{change.slug}: nothing changed."
    return f"{change.slug}: {change_words(change.before, change.after)}."


@router.post(OPERATOR_CATALOG + "/{slug}/rate", response_class=HTMLResponse)
async def change_rate(
    slug: Annotated[str, Path(max_length=40)],
    write: CatalogWriteDep,
    rate: Annotated[str, Form(max_length=40)] = "",
) -> HTMLResponse:
    """A model's rate per GPU-hour, typed in dollars, as `PATCH /api/v1/admin/gpus/{slug}`."""
    cents = cents_from_text(rate)
    if cents is None:
        return await write.refused(422, rate_error=(slug, RATE_FORMAT))
    try:
        patch = GpuModelPatch(price_per_gpu_hour_cents=cents)
    except ValidationError:
        return await write.refused(422, rate_error=(slug, RATE_RANGE))
    change = await service.operator_change_gpu_model(
        write.db,
        write.actor,
        slug=slug,
        price_per_gpu_hour_cents=patch.price_per_gpu_hour_cents,
        now=write.now,
    )
    return await write.done(_change_notice(change))


@router.post(OPERATOR_CATALOG + "/{slug}/active", response_class=HTMLResponse)
async def change_active(
    slug: Annotated[str, Path(max_length=40)],
    write: CatalogWriteDep,
    active: Annotated[bool, Form()],
) -> HTMLResponse:
    """Take a model off the catalog or offer it again, as `PATCH /api/v1/admin/gpus/{slug}`."""
    change = await service.operator_change_gpu_model(
        write.db, write.actor, slug=slug, active=active, now=write.now
    )
    return await write.done(_change_notice(change))


def _new_model(typed: dict[str, str]) -> GpuModelIn:
    """The add form's model, validated as `POST /api/v1/admin/gpus` validates its body; the
    figures and the rate converted from what was typed first."""
    values: dict[str, Any] = {f: v for f, v in typed.items() if f not in FIGURES and f != "rate"}
    for field in FIGURES:
        value = typed[field]
        values[field] = int(value) if value.isdigit() else (value or None)
    cents = cents_from_text(typed["rate"])
    values["price_per_gpu_hour_cents"] = typed["rate"] if cents is None else cents
    return GpuModelIn.model_validate(values)


@router.post(OPERATOR_CATALOG, response_class=HTMLResponse)
async def add_model(request: Request, write: CatalogWriteDep) -> HTMLResponse:
    """Add a model, as `POST /api/v1/admin/gpus`; a refused field comes back beside the form."""
    typed = _typed(await request.form(), ADD_FIELDS)
    try:
        model = _new_model(typed)
    except ValidationError as error:
        refused = _refusals(error)
        if "rate" in refused and cents_from_text(typed["rate"]) is None:
            refused["rate"] = RATE_FORMAT
        return await write.refused(422, add_typed=typed, add_errors=refused)
    try:
        added = await service.operator_add_gpu_model(
            write.db, write.actor, fields=model.model_dump(mode="json"), now=write.now
        )
    except service.GpuModelExists as taken:
        return await write.refused(409, add_typed=typed, add_errors={"slug": taken.detail})
    return await write.done(f"{added['slug']}: {change_words(None, added)}.")


# The console's machine images: every image, and an admin's changes to them.
OPERATOR_IMAGES = "/admin/images"
IMAGE_FIELDS = ("slug", "name", "description", "versions", "vendor")
VERSIONS_FORMAT = (
    "Each component as its name and version, separated by commas: Ubuntu 24.04, CUDA 12.6."
)
# The add form's vendor choices: what an image's GPU software is for.
IMAGE_VENDORS = (
    ("nvidia", "NVIDIA GPUs (CUDA)"),
    ("amd", "AMD GPUs (ROCm)"),
    ("", "Every GPU (the driver only)"),
)
IMAGE_RULES = {
    "slug": "Lower-case letters, digits and dots, words joined by hyphens, like pytorch-2.6.",
    "versions": VERSIONS_FORMAT + " At most 8.",
    "vendor": "NVIDIA, AMD, or every GPU.",
}


def _typed_versions(typed: str) -> list[dict[str, str]] | str:
    """The versions typed in a form (`Ubuntu 24.04, CUDA 12.6`) as the API's body gives them;
    what was typed when a component lacks its version (for the validation to refuse)."""
    parts = [part.split() for part in typed.split(",") if part.strip()]
    if not parts or any(len(words) < 2 for words in parts):
        return typed
    return [{"name": " ".join(words[:-1]), "version": words[-1]} for words in parts]


def _image_refusals(error: ValidationError) -> dict[str, str]:
    refused: dict[str, str] = {}
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "form"
        refused.setdefault(field, IMAGE_RULES.get(field, problem["msg"]))
    return refused


async def _operator_images(
    request: Request,
    operator: Customer,
    db: AsyncSession,
    recent_login: bool,
    /,
    *,
    notice: str | None = None,
    edit_error: tuple[str, dict[str, str]] | None = None,
    add_typed: dict[str, str] | None = None,
    add_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The images as the database has them now (a change just committed included)."""
    catalog = await service.load_catalog(db)
    context = {
        "images": [
            # Its versions shown, and as its form takes them (`Ubuntu 24.04, CUDA 12.6`).
            (
                image,
                service.versions_label(image.versions),
                service.versions_label(image.versions, separator=", "),
            )
            for image in catalog.images
        ],
        "image_vendors": IMAGE_VENDORS,
        "edit_error": edit_error,
    }
    page = ConsolePage(request, operator, db, recent_login, notice, add_typed, add_errors)
    return await page.render("admin_images.html", service.IMAGE_TARGET, context, status_code)


@router.get(OPERATOR_IMAGES, response_class=HTMLResponse)
async def operator_images(
    request: Request, staff: StaffCustomer, db: SessionDep, recent_login: RecentLoginDep
) -> HTMLResponse:
    """Every machine image, offered or not, which one is the default, the latest changes;
    admins get the forms to change them and to add one."""
    return await _operator_images(request, staff, db, recent_login)


async def _images_write(write: CatalogWriteDep) -> CatalogWrite:
    return replace(write, page=_operator_images)


ImagesWriteDep = Annotated[CatalogWrite, Depends(_images_write)]


def _typed(form: FormData, fields: tuple[str, ...]) -> dict[str, str]:
    return {field: str(form.get(field, ""))[:400].strip() for field in fields}


@router.post(OPERATOR_IMAGES, response_class=HTMLResponse)
async def add_image(request: Request, write: ImagesWriteDep) -> HTMLResponse:
    """Add an image, as `POST /api/v1/admin/images`; a refused field comes back beside the
    form."""
    typed = _typed(await request.form(), IMAGE_FIELDS)
    try:
        image = MachineImageIn.model_validate(
            typed
            | {"versions": _typed_versions(typed["versions"]), "vendor": typed["vendor"] or None}
        )
    except ValidationError as error:
        return await write.refused(422, add_typed=typed, add_errors=_image_refusals(error))
    try:
        added = await service.operator_add_image(
            write.db, write.actor, fields=image.model_dump(mode="json"), now=write.now
        )
    except service.ImageExists as taken:
        return await write.refused(409, add_typed=typed, add_errors={"slug": taken.detail})
    return await write.done(f"{added['slug']}: {change_words(None, added)}.")


@router.post(OPERATOR_IMAGES + "/{slug}", response_class=HTMLResponse)
async def edit_image(
    request: Request, slug: Annotated[str, Path(max_length=40)], write: ImagesWriteDep
) -> HTMLResponse:
    """An image's name, description and versions, as `PATCH /api/v1/admin/images/{slug}`."""
    typed = _typed(await request.form(), ("name", "description", "versions"))
    try:
        patch = MachineImagePatch.model_validate(
            typed | {"versions": _typed_versions(typed["versions"])}
        )
    except ValidationError as error:
        return await write.refused(422, edit_error=(slug, _image_refusals(error)))
    change = await service.operator_change_image(
        write.db,
        write.actor,
        slug=slug,
        name=patch.name,
        description=patch.description,
        versions=None if patch.versions is None else [v.model_dump() for v in patch.versions],
        now=write.now,
    )
    return await write.done(_change_notice(change))


@router.post(OPERATOR_IMAGES + "/{slug}/active", response_class=HTMLResponse)
async def change_image_active(
    slug: Annotated[str, Path(max_length=40)],
    write: ImagesWriteDep,
    active: Annotated[bool, Form()],
) -> HTMLResponse:
    """Take an image off the catalog or offer it again, as `PATCH /api/v1/admin/images/{slug}`;
    the default image stays offered (409, with the reason)."""
    try:
        change = await service.operator_change_image(
            write.db, write.actor, slug=slug, active=active, now=write.now
        )
    except service.DefaultImageRequired as refused:
        return await write.refused(409, notice=refused.detail)
    return await write.done(_change_notice(change))


@router.post(OPERATOR_IMAGES + "/{slug}/default", response_class=HTMLResponse)
async def make_image_default(
    slug: Annotated[str, Path(max_length=40)], write: ImagesWriteDep
) -> HTMLResponse:
    """Make an offered image the default, as `PATCH /api/v1/admin/images/{slug}` with
    `is_default: true`."""
    try:
        change = await service.operator_change_image(
            write.db, write.actor, slug=slug, make_default=True, now=write.now
        )
    except service.DefaultImageRequired as refused:
        return await write.refused(409, notice=refused.detail)
    return await write.done(_change_notice(change))
