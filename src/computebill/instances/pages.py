"""The console: the signed-in user's instances, watched live while they change, launching one
pay as you go from the configurator, and ending one early. The same services as the JSON API
(`/api/v1/instances`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from computebill.audit import service as audit
from computebill.auth.browser import (
    AdminWithRecentLogin,
    Customer,
    CustomerDep,
    LoginFirstDep,
    RecentLoginDep,
    StaffCustomer,
    VisitorDep,
    verify_csrf,
)
from computebill.auth.dependencies import ClientDep
from computebill.catalog.description import machine_gpus
from computebill.catalog.service import validate_configuration, versions_label
from computebill.deps import CatalogDep, ClockDep, SessionDep, SettingsDep
from computebill.errors import AppError, NotFound
from computebill.instances import service
from computebill.instances.metering import InsufficientCredit
from computebill.instances.models import Billing, InstanceSshKey, InstanceStatus
from computebill.instances.schemas import OperatorStopIn
from computebill.money import MILLICENTS_PER_CENT
from computebill.paging import PageCursor, PageLimit
from computebill.web import templates
from computebill.web.login import LoginRequired
from computebill.web.rendering import redirect, render

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])

DASHBOARD = "/dashboard"
# What an owner may still end early (a stopping instance is already on its way out).
TERMINABLE = frozenset({InstanceStatus.PROVISIONING, InstanceStatus.RUNNING})


def duration(seconds: int) -> str:
    """`17940` → `4 h 59 min`, `750` → `12 min 30 s`, `42` → `42 s`."""
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours:,} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One instance as the console shows it: facts from the services, worded for people."""

    instance: service.InstanceFacts  # the template reads `InstanceOut`'s fields of it
    usage: service.Usage
    ssh_command: str | None
    ssh_keys: Sequence[InstanceSshKey]  # on its machine: names and fingerprints
    image: str | None  # what it is installed with: `PyTorch: Ubuntu 24.04 · CUDA 12.6 · …`
    left_percent: int  # of the paid time; 0 for a pay-as-you-go instance
    time_note: str
    expiry_warning: str | None  # a running fixed-hours instance in its last hour
    can_terminate: bool
    can_extend: bool  # a live fixed-hours instance: more hours can be bought for it


@dataclass(slots=True)
class OrderGroup:
    order_id: str | None  # None: the pay-as-you-go instances
    rows: list[InstanceRow] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return (self.order_id or "")[:8]


def _time_note(instance: service.InstanceFacts, usage: service.Usage) -> str:
    if instance.paid_seconds is None:
        return _metered_note(instance, usage)
    paid = duration(instance.paid_seconds)
    if instance.status is InstanceStatus.PROVISIONING:
        return f"{paid} paid; the clock starts once it is running"
    if instance.status is InstanceStatus.RUNNING:
        return f"{duration(usage.remaining_seconds or 0)} left of {paid}"
    if instance.status is InstanceStatus.FAILED:
        return f"never started; {paid} paid"
    return f"used {duration(usage.used_seconds)} of {paid}"


def _metered_note(instance: service.InstanceFacts, usage: service.Usage) -> str:
    if instance.status is InstanceStatus.PROVISIONING:
        return "billed by the second once it is running"
    if instance.status is InstanceStatus.FAILED:
        return "never started; nothing charged"
    ran = f"ran {duration(usage.used_seconds)}"
    if instance.status is InstanceStatus.RUNNING and usage.remaining_seconds is not None:
        return f"{ran}; stops in {duration(usage.remaining_seconds)} (safety stop)"
    return ran


def _expiry_warning(instance: service.InstanceFacts, usage: service.Usage) -> str | None:
    left = usage.remaining_seconds
    if (
        instance.billing != Billing.FIXED_HOURS
        or instance.status is not InstanceStatus.RUNNING
        or left is None
        or left > service.EXPIRY_WARNING.total_seconds()
    ):
        return None
    when = f"in {left // 60} min" if left >= 60 else "in less than a minute"
    return f"Stops {when}; its disk will be erased"


def _instance_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as error:
        raise NotFound("No such instance.") from error


def instance_row(
    instance: service.InstanceFacts, keys: Sequence[InstanceSshKey], *, now: datetime
) -> InstanceRow:
    used = service.usage(instance, now=now)
    return InstanceRow(
        instance=instance,
        usage=used,
        ssh_command=service.ssh_command(instance, keys),
        ssh_keys=keys,
        image=(
            None
            if instance.image_name is None
            else f"{instance.image_name}: {versions_label(instance.image_versions or ())}"
        ),
        left_percent=max(0, 100 - used.used_seconds * 100 // instance.paid_seconds)
        if instance.paid_seconds
        else 0,
        time_note=_time_note(instance, used),
        expiry_warning=_expiry_warning(instance, used),
        can_terminate=instance.status in TERMINABLE,
        can_extend=instance.billing == Billing.FIXED_HOURS
        and instance.status in service.EXTENDABLE,
    )


async def _console(db: SessionDep, user_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """The instance list's context: instances grouped by order (newest first), and whether any
    is still changing on its own or running pay as you go (its cost moves), still to be created
    for a paid order, awaiting a payment being confirmed, or about to get an extension's hours
    (then the list keeps polling)."""
    # Asked before the list is read: each statement sees what had committed when it began, so an
    # order provisioned between the two shows its instances; read the other way round, it
    # showed neither them nor that they were coming, and the list stopped polling.
    expected = await service.instances_expected(db, user_id=user_id, now=now)
    instances = await service.list_instances(await db.connection(), user_id=user_id)
    keys = await service.ssh_keys_of(db, [uuid.UUID(instance.id) for instance in instances])
    groups: dict[str | None, OrderGroup] = {}
    for instance in instances:
        group = groups.setdefault(instance.order_id, OrderGroup(instance.order_id))
        on_machine = keys.get(uuid.UUID(instance.id), [])
        group.rows.append(instance_row(instance, on_machine, now=now))
    counts: dict[str, int] = {}
    for instance in instances:
        counts[instance.status.value] = counts.get(instance.status.value, 0) + 1
    return {
        "groups": list(groups.values()),
        "counts": counts,
        "on_the_way": expected is service.Expected.INSTANCES,
        "awaiting_payment": expected is service.Expected.PAYMENT,
        "extending": expected is service.Expected.EXTENSION,
        "polling": expected is not None
        or any(instance.status in service.SETTLING for instance in instances)
        or any(service.is_metered_running(instance) for instance in instances),
    }


def _instance_list(request: Request, context: dict[str, Any]) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, "_instances.html", {**context, "oob_balance": True}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(
    request: Request, customer: CustomerDep, db: SessionDep, clock: ClockDep
) -> HTMLResponse:
    context = await _console(db, customer.user_id, clock.now())
    return render(request, "dashboard.html", context, visitor=customer.visitor)


@router.get("/dashboard/instances", response_class=HTMLResponse)
async def instance_list(
    request: Request, visitor: VisitorDep, db: SessionDep, clock: ClockDep
) -> HTMLResponse:
    """The instance list alone, which the dashboard polls while an instance is changing."""
    if visitor.principal is None:
        raise LoginRequired(DASHBOARD)  # back to the whole page, not to this fragment
    context = await _console(db, visitor.principal.user_id, clock.now())
    return _instance_list(request, {"visitor": visitor, **context})


def terminate_path(instance_id: uuid.UUID | str) -> str:
    return f"{DASHBOARD}/instances/{instance_id}/terminate"


@router.get(terminate_path("{instance_id}"), response_class=HTMLResponse)
async def confirm_termination(
    request: Request,
    instance_id: str,
    customer: CustomerDep,
    db: SessionDep,
    clock: ClockDep,
) -> HTMLResponse:
    """Asks before ending an instance, naming what becomes of its disk and of the money: for
    htmx the panel the dashboard shows above its list, else a page of its own."""
    now = clock.now()
    instance, _ = await service.get_instance(
        db, user_id=customer.user_id, instance_id=_instance_id(instance_id)
    )
    keys = await service.instance_ssh_keys(db, instance.id)
    context = {
        "row": instance_row(instance, keys, now=now),
        "unused_credit_cents": service.unused_time_millicents(instance, now=now)
        // MILLICENTS_PER_CENT,
        "terminate_path": terminate_path(instance.id),
    }
    if request.headers.get("hx-request") == "true":
        return templates.TemplateResponse(
            request, "_terminate_panel.html", {**context, "visitor": customer.visitor}
        )
    return render(request, "terminate_instance.html", context, visitor=customer.visitor)


@router.post(terminate_path("{instance_id}"))
async def terminate(
    request: Request,
    instance_id: str,
    customer: CustomerDep,
    db: SessionDep,
    clock: ClockDep,
) -> Response:
    """End an instance early, as `POST /api/v1/instances/{id}/terminate` does; 404 for anyone
    else's. htmx gets the refreshed instance list (and the confirmation panel closed), a plain
    form the dashboard."""
    now = clock.now()
    await service.request_stop(
        db, user_id=customer.user_id, instance_id=_instance_id(instance_id), now=now
    )
    if request.headers.get("hx-request") == "true":
        context = await _console(db, customer.user_id, now)
        return _instance_list(
            request, {"visitor": customer.visitor, **context, "close_terminate_panel": True}
        )
    return redirect(DASHBOARD, request)


# Launching pay as you go, from the configurator ---------------------------------------------------

IntForm = Annotated[int, Form()]
TextForm = Annotated[str, Form(max_length=40)]


class BadMaxHours(AppError):
    status = 422
    code = "invalid_max_hours"


def _max_hours(typed: str) -> int | None:
    """The optional safety stop as typed: empty for none, else whole hours."""
    typed = typed.strip()
    if not typed:
        return None
    if not typed.isdigit():
        raise BadMaxHours("The safety stop is a whole number of hours, or empty for none.")
    return int(typed)


@router.post("/instances/pay-as-you-go")
async def launch_pay_as_you_go(
    request: Request,
    visitor: VisitorDep,
    db: SessionDep,
    catalog: CatalogDep,
    settings: SettingsDep,
    clock: ClockDep,
    log_in_first: LoginFirstDep,
    gpu: TextForm,
    gpu_count: IntForm,
    vcpus: IntForm,
    storage_gb: IntForm,
    region: Annotated[str | None, Form(max_length=40)] = None,
    max_hours: Annotated[str, Form(max_length=10)] = "",
    image: Annotated[str | None, Form(max_length=40)] = None,
) -> Response:
    """Launch the configurator's configuration billed by the second, as `POST /api/v1/instances`
    does, then the dashboard. A refusal (402 `insufficient_credit`, a bad option) is shown with
    what to do: for htmx beside the button, else on a page of its own. A visitor who is not
    signed in logs in first and comes back to the same configuration."""
    options: dict[str, int | str] = {
        "gpu_count": gpu_count,
        "vcpus": vcpus,
        "storage_gb": storage_gb,
        **({"region": region} if region else {}),
        **({"image": image} if image else {}),
    }
    configurator = f"/gpus/{gpu}?{urlencode(options)}"
    if visitor.principal is None:
        # Back to the configuration once signed in, to launch it from there: a launch spends
        # money, so it is never done for the visitor on the way back.
        model = catalog.model(gpu)
        what = machine_gpus(gpu_count, model.name) if model else "a machine"
        return log_in_first(next=configurator, reason=f"launch {what} pay as you go")
    try:
        hours = _max_hours(max_hours)
        valid = validate_configuration(
            catalog,
            gpu=gpu,
            gpu_count=gpu_count,
            vcpus=vcpus,
            storage_gb=storage_gb,
            hours=hours,
            hours_field="max_hours",
            region=region,
        )
        await service.launch_pay_as_you_go(
            db,
            catalog,
            valid,
            user_id=visitor.principal.user_id,
            max_hours=hours,
            ssh_key_ids=None,  # all the account's keys
            image=image or None,
            idempotency_key=None,
            min_runway_seconds=settings.min_runway_seconds,
            now=clock.now(),
        )
    except AppError as refused:
        shortfall = (refused.extensions or {}).get("shortfall_cents")
        context = {
            "error": refused.detail,
            "shortfall_cents": shortfall if isinstance(refused, InsufficientCredit) else None,
            "configurator": configurator,
        }
        if request.headers.get("hx-request") == "true":
            # A 200, so htmx swaps the message in beside the button.
            return render(request, "_launch_refused.html", context, visitor=visitor)
        return render(
            request,
            "launch_refused.html",
            context,
            visitor=visitor,
            status_code=refused.status,
        )
    return redirect(DASHBOARD, request)


# The operator's console: every customer's instances, and an admin's force-stop.
OPERATOR_LIST = "/admin/instances"
OPERATOR_PAGE = 50  # instances a page


@dataclass(frozen=True, slots=True)
class InstanceFilters:
    """The list's filters as typed (kept in the form and the pager's links), and what they
    select; `error` says which one is not understood."""

    typed: dict[str, str]
    status: InstanceStatus | None = None
    gpu: str | None = None
    customer: uuid.UUID | None = None
    error: str | None = None


def instance_filters(status: str, gpu: str, customer: str) -> InstanceFilters:
    typed = {"status": status.strip(), "gpu": gpu.strip(), "customer": customer.strip()}
    try:
        chosen = InstanceStatus(typed["status"]) if typed["status"] else None
    except ValueError:
        return InstanceFilters(typed, error=f"There is no status {typed['status']!r}.")
    try:
        user_id = uuid.UUID(typed["customer"]) if typed["customer"] else None
    except ValueError:
        return InstanceFilters(typed, error="A customer is chosen by their id, a UUID.")
    return InstanceFilters(typed, status=chosen, gpu=typed["gpu"] or None, customer=user_id)


async def _operator_list(
    request: Request,
    staff: Customer,
    db: SessionDep,
    catalog: CatalogDep,
    recent_login: bool,
    filters: InstanceFilters,
    *,
    limit: int,
    cursor: str | None,
    notice: str | None = None,
    stop_error: tuple[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    instances: list[service.ListedInstance] = []
    next_cursor = None
    if filters.error is None:
        instances, next_cursor = await service.instance_page(
            await db.connection(),
            user_id=filters.customer,
            status=filters.status,
            gpu=filters.gpu,
            limit=limit,
            cursor=cursor,
        )
    query = {name: value for name, value in filters.typed.items() if value}
    if limit != OPERATOR_PAGE:
        query["limit"] = str(limit)
    context = {
        "instances": instances,
        "stoppable": TERMINABLE,
        "filters": filters,
        "statuses": [status.value for status in InstanceStatus],
        "gpus": [model.slug for model in catalog.models],
        "next_cursor": next_cursor,
        "query": query,
        "recent_login": recent_login,
        "notice": notice,
        "stop_error": stop_error,
    }
    return render(
        request,
        "admin_instances.html",
        context,
        visitor=staff.visitor,
        status_code=422 if filters.error else status_code,
    )


@router.get(OPERATOR_LIST, response_class=HTMLResponse)
async def operator_instances(
    request: Request,
    staff: StaffCustomer,
    db: SessionDep,
    catalog: CatalogDep,
    recent_login: RecentLoginDep,
    status: Annotated[str, Query(max_length=40)] = "",
    gpu: Annotated[str, Query(max_length=40)] = "",
    customer: Annotated[str, Query(max_length=60)] = "",
    limit: PageLimit = OPERATOR_PAGE,
    cursor: PageCursor = None,
    stopped: Annotated[str, Query(max_length=60)] = "",
) -> HTMLResponse:
    """Every customer's instances, newest first, by status, GPU model and customer; admins get
    a Force stop form on each live one."""
    notice = f"Instance {_instance_id(stopped)} is stopping." if stopped else None
    return await _operator_list(
        request,
        staff,
        db,
        catalog,
        recent_login,
        instance_filters(status, gpu, customer),
        limit=limit,
        cursor=cursor,
        notice=notice,
    )


@router.post(OPERATOR_LIST + "/{instance_id}/stop")
async def operator_stop(
    request: Request,
    instance_id: str,
    admin: AdminWithRecentLogin,
    db: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    client: ClientDep,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """Force-stop a customer's instance, as `POST /api/v1/admin/instances/{id}/stop` does (the
    same service call, audited); a missing reason comes back beside the form."""
    try:
        stop = OperatorStopIn(reason=reason)
    except ValidationError:
        return await _operator_list(
            request,
            admin,
            db,
            catalog,
            True,
            instance_filters("", "", ""),
            limit=OPERATOR_PAGE,
            cursor=None,
            stop_error=(instance_id, "Say why, in up to 160 characters."),
            status_code=422,
        )
    await service.operator_stop(
        db,
        await audit.signed_in_actor(db, admin.user_id, client),
        instance_id=_instance_id(instance_id),
        reason=stop.reason,
        now=clock.now(),
    )
    return redirect(f"{OPERATOR_LIST}?{urlencode({'stopped': instance_id})}", request)
