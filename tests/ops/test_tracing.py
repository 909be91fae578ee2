"""Traces: a request's span over its SQL and Redis spans, one trace from a webhook through the
jobs it causes (and their calls to Stripe), the trace id on the log lines, and nothing at all
installed while `OTEL_EXPORTER_OTLP_ENDPOINT` is unset."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import AnyHttpUrl

from computebill.app import create_app
from computebill.config import Settings
from computebill.devserver.embedded import free_port
from computebill.jobs import TRACE_CONTEXT, JobContext, JobName
from computebill.state import app_state
from computebill.tracing import (
    APP_SERVICE,
    WORKER_SERVICE,
    current_trace_context,
    start_tracing,
    stop_tracing,
)
from computebill.worker.registry import JobSpec, job_specs
from computebill.worker.runtime import build_worker
from tests.support.http import in_process, serve
from tests.support.platform import Process, wait_healthy
from tests.support.settings import settings_environment
from tests.support.shopper import Shopper, pay
from tests.support.stripe import (
    WEBHOOK_SECRET,
    EmulatorProcess,
    post_event,
    with_stripe,
)

COLLECTOR = "http://127.0.0.1:4318"  # never reached: the tests' spans stay in memory


def traced(settings: Settings, **changes: object) -> Settings:
    """`settings` with tracing on, on a queue of their own (a platform's worker may be running on
    the session's), and machines that boot at once."""
    return settings.model_copy(
        update={
            "otel_exporter_otlp_endpoint": AnyHttpUrl(COLLECTOR),
            "redis_namespace": f"{settings.redis_namespace}-tracing",
            "simulated_boot_min_seconds": 0,
            "simulated_boot_max_seconds": 0,
            **changes,
        }
    )


@pytest.fixture
def spans(settings: Settings) -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, its spans kept in memory; off again after the test."""
    exporter = InMemorySpanExporter()
    assert start_tracing(
        traced(settings), APP_SERVICE, span_processor=SimpleSpanProcessor(exporter)
    )
    try:
        yield exporter
    finally:
        stop_tracing()


def only(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def attribute(span: ReadableSpan, key: str) -> object:
    return (span.attributes or {}).get(key)


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [
        span
        for span in spans
        if span.parent is not None and span.parent.span_id == parent.context.span_id
    ]


async def test_a_request_is_a_server_span_over_its_sql_and_redis_spans(
    settings: Settings, spans: InMemorySpanExporter
) -> None:
    async with in_process(traced(settings)) as http:
        answer = await http.get("/api/v1/gpus/nvidia-h100", params={"token": "a-secret"})
    assert answer.status_code == 200, answer.text

    finished = spans.get_finished_spans()
    request = only(finished, "GET /api/v1/gpus/{slug}")  # the route's template, not the path
    assert request.kind is SpanKind.SERVER
    assert request.resource.attributes["service.name"] == APP_SERVICE
    assert attribute(request, "http.url") == "http://testserver/api/v1/gpus/nvidia-h100"
    assert "a-secret" not in str(request.attributes)  # a query string may carry secrets
    below = children(finished, request)
    sql = [span for span in below if attribute(span, "db.system") == "postgresql"]
    assert sql, [span.name for span in below]  # the catalog, read on the app's first request
    assert any("SELECT" in str(attribute(span, "db.statement")) for span in sql)
    assert any(attribute(span, "db.system") == "redis" for span in below)  # its version
    assert all(span.context.trace_id == request.context.trace_id for span in below)


async def wait_for_span(spans: InMemorySpanExporter, name: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not any(span.name == name for span in spans.get_finished_spans()):
        assert time.monotonic() < deadline, [span.name for span in spans.get_finished_spans()]
        await asyncio.sleep(0.1)


async def test_a_webhook_its_fulfilment_and_provisioning_are_one_trace(
    settings: Settings, spans: InMemorySpanExporter, checkout_emulator: EmulatorProcess
) -> None:
    """The webhook's request asks for the event's job; the job reads the session from Stripe and
    fulfils the order, which asks for its provisioning: all of it one trace, each job a child
    of the span that asked for it, run by a real worker on the real queue."""
    app_settings = with_stripe(traced(settings), api_base=checkout_emulator.base_url)
    async with in_process(app_settings) as http:
        shopper = await Shopper(http).sign_up()
        await shopper.add()
        order_id, checkout_url = await shopper.checkout_url()
        assert (await pay(checkout_url)).status_code == 303
        listed = await checkout_emulator.client().v1.events.list_async(params={"limit": 100})
        event = next(
            e
            for e in (listed_event.to_dict() for listed_event in listed.data)
            if e["type"] == "checkout.session.completed"
            and e["data"]["object"]["metadata"].get("order_id") == order_id
        )
        session_id = event["data"]["object"]["id"]
        spans.clear()  # the shopping's own traces

        names = (JobName.PROCESS_STRIPE_EVENT, JobName.PROVISION_ORDER)
        specs = {str(name): spec for name, spec in job_specs(app_settings).items() if name in names}
        worker = build_worker(app_settings, concurrency=4, specs=specs)
        async with anyio.create_task_group() as group:
            await group.start(worker.run_async)
            assert (await post_event(http, event, WEBHOOK_SECRET)).status_code == 200
            await wait_for_span(spans, JobName.PROVISION_ORDER)
            deadline = time.monotonic() + 30
            while worker.running():  # stopped between jobs, not in the middle of one
                assert time.monotonic() < deadline, "the worker's jobs did not finish"
                await asyncio.sleep(0.05)
            group.cancel_scope.cancel()

    finished = spans.get_finished_spans()
    webhook = only(finished, "POST /webhooks/stripe")
    fulfilment = only(finished, JobName.PROCESS_STRIPE_EVENT)
    provisioning = only(finished, JobName.PROVISION_ORDER)
    assert fulfilment.kind is SpanKind.CONSUMER
    assert fulfilment.parent is not None
    assert fulfilment.parent.is_remote  # it came through the queue
    assert fulfilment.parent.span_id == webhook.context.span_id
    assert provisioning.parent is not None
    assert provisioning.parent.span_id == fulfilment.context.span_id
    assert {span.context.trace_id for span in (webhook, fulfilment, provisioning)} == {
        webhook.context.trace_id
    }
    # The job's call to Stripe: a client span of the SDK's HTTP client, under the job's span.
    stripe_reads = [
        span
        for span in children(finished, fulfilment)
        if str(attribute(span, "http.url")).startswith(f"{checkout_emulator.base_url}/v1/")
    ]
    assert [(span.kind, attribute(span, "http.method")) for span in stripe_reads] == [
        (SpanKind.CLIENT, "GET")
    ]
    assert f"/v1/checkout/sessions/{session_id}?" in str(attribute(stripe_reads[0], "http.url"))
    assert any(
        attribute(span, "db.system") == "postgresql" for span in children(finished, provisioning)
    )


async def test_with_no_endpoint_nothing_is_instrumented(settings: Settings) -> None:
    assert settings.otel_exporter_otlp_endpoint is None
    assert not start_tracing(settings, APP_SERVICE)
    app = create_app(settings)
    async for http in serve(app):
        assert (await http.get("/api/v1/gpus/nvidia-h100")).status_code == 200
        engine = app_state(app).engine
        assert not engine.sync_engine.dispatch.before_cursor_execute  # no SQL listener
    assert not {m.cls.__module__ for m in app.user_middleware} & {
        "opentelemetry.instrumentation.asgi",
        "computebill.tracing",
    }
    assert not hasattr(aioredis.Redis.execute_command, "__wrapped__")
    assert not hasattr(httpx.AsyncHTTPTransport.handle_async_request, "__wrapped__")
    assert current_trace_context() is None  # jobs carry nothing


async def test_a_job_queued_with_a_trace_context_runs_where_tracing_is_off(
    settings: Settings,
) -> None:
    """A job sent by a process with tracing on, run by a worker with it off (or queued before
    a worker knew of it): the context is taken off, and the job gets its own arguments."""
    received: list[tuple[object, ...]] = []

    async def noted(ctx: JobContext, *args: object) -> None:
        received.append(args)

    own_queue = settings.model_copy(update={"redis_namespace": f"{settings.redis_namespace}-tc"})
    worker = build_worker(
        own_queue, specs={"noted": JobSpec(noted, timeout=timedelta(seconds=5), max_tries=1)}
    )
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with anyio.create_task_group() as group:
        await group.start(worker.run_async)
        task = await worker.enqueue_unsafe(
            "noted", "order-1", **{TRACE_CONTEXT: {"traceparent": traceparent}}
        )
        result = await task.result(timeout=30)
        group.cancel_scope.cancel()
    assert result.success, result
    assert received == [("order-1",)]


# The app as a process, exporting over OTLP ---------------------------------------------------


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver on loopback: keeps what each export request carries."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _CollectorHandler)
        self.exports: list[ExportTraceServiceRequest] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[tuple[str, Any]]:
        """(service name, span) for every span received."""
        found: list[tuple[str, Any]] = []
        for export in list(self.exports):
            for resource_spans in export.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    found.extend((service, span) for span in scope_spans.spans)
        return found

    async def span_named(self, name: str, within: float = 30) -> tuple[str, Any]:
        """(service name, span) of the first span of this name to arrive (asserts one does)."""
        deadline = time.monotonic() + within
        while True:
            found = [(service, span) for service, span in self.spans() if span.name == name]
            if found:
                return found[0]
            assert time.monotonic() < deadline, [span.name for _, span in self.spans()]
            await asyncio.sleep(0.1)


class _CollectorHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path == "/v1/traces":
            self.server.exports.append(ExportTraceServiceRequest.FromString(body))
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test reads what arrived, not the server's access log


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def app_process(
    settings: Settings, collector: Collector, tmp_path: Path
) -> AsyncIterator[tuple[str, Path]]:
    """`computebill app` configured from the environment with the collector as its endpoint:
    its URL and its log."""
    port = free_port()
    env = settings_environment(
        settings,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        LOG_FORMAT="json",
        OTEL_BSP_SCHEDULE_DELAY="100",  # send spans within 0.1 s, not 5 s
    )
    log = tmp_path / "app.log"
    process = Process([sys.executable, "-m", "computebill", "app", "--port", str(port)], env, log)
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_healthy, f"{url}/healthz", log, process)
        yield url, log
    finally:
        process.stop()


@pytest.mark.slow
async def test_the_app_process_exports_its_spans_and_logs_their_trace_id(
    collector: Collector, app_process: tuple[str, Path]
) -> None:
    url, log = app_process
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/api/v1/gpus", headers={"x-request-id": "tracing-test-0001"})
    assert answer.status_code == 200

    service, request = await collector.span_named("GET /api/v1/gpus")
    assert service == APP_SERVICE
    assert not any(span.name.endswith("/healthz") for _, span in collector.spans())  # probes

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    logged = next(line for line in lines if line.get("request_id") == "tracing-test-0001")
    assert logged["trace_id"] == request.trace_id.hex()
    assert logged["span_id"] == request.span_id.hex()


@pytest.mark.slow
async def test_the_worker_process_exports_a_span_per_job_run(
    settings: Settings, collector: Collector, tmp_path: Path
) -> None:
    """`computebill worker` with the endpoint set: its periodic heartbeat's runs arrive as job
    spans of the worker's service, each over the SQL it ran."""
    own_queue = settings.model_copy(
        update={"redis_namespace": f"{settings.redis_namespace}-tracing-worker"}
    )
    env = settings_environment(
        own_queue, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="100"
    )
    log = tmp_path / "worker.log"
    worker = Process([sys.executable, "-m", "computebill", "worker"], env, log)
    try:
        service, beat = await collector.span_named(JobName.RECORD_WORKER_HEARTBEAT, within=60)
    finally:
        worker.stop()
    received = collector.spans()
    assert service == WORKER_SERVICE
    sql = [
        span
        for _, span in received
        if span.parent_span_id == beat.span_id
        and ("db.system", "postgresql") in {(a.key, a.value.string_value) for a in span.attributes}
    ]
    assert sql, [span.name for _, span in received]
    assert {span.trace_id for span in sql} == {beat.trace_id}
