"""Traces (OpenTelemetry), on only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (docs/architecture.md
§1, traces).

Each process starts tracing once, at its entry (`start_tracing`); the app, the engines and the
worker's job wrapper then ask this module to instrument themselves, and each of those asks is a
no-op while tracing is off: then no middleware, no event listener and no patch is installed, and
a request costs nothing it did not cost before. The SDK, the exporter and the instrumentations
are imported only when tracing starts.

A job carries the trace context of the code that asked for it (`current_trace_context`, taken
when `request_job` is called, not when the job is sent: the webhook inbox sends a whole batch's
jobs from a task of its own), so one trace shows a webhook, the jobs it caused, and theirs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, propagate, trace

from computebill.config import Settings
from computebill.metrics import UNMATCHED_ROUTE, route_template

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

APP_SERVICE = "computebill-app"
WORKER_SERVICE = "computebill-worker"

# Probes arrive every few seconds (the request log leaves them out too): no trace for them.
_UNTRACED_PATHS = ("/healthz", "/readyz", "/metrics")


@dataclass(frozen=True, slots=True)
class _Tracing:
    provider: TracerProvider
    jobs: trace.Tracer
    sql: trace.Tracer


_active: _Tracing | None = None


def enabled(settings: Settings) -> bool:
    return settings.otel_exporter_otlp_endpoint is not None


def start_tracing(
    settings: Settings, service_name: str, *, span_processor: SpanProcessor | None = None
) -> bool:
    """Install tracing for this process when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: a tracer
    provider exporting in batches over OTLP/HTTP (or to `span_processor`), and the Redis and
    HTTPX (Stripe's HTTP client) instrumentation. True when it did."""
    global _active  # one provider per process, as OpenTelemetry has it
    if not enabled(settings) or _active is not None:
        return _active is not None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name or service_name})
    )
    if span_processor is None:
        endpoint = str(settings.otel_exporter_otlp_endpoint).rstrip("/")
        span_processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    provider.add_span_processor(span_processor)
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _active = _Tracing(
        provider=provider,
        jobs=provider.get_tracer("computebill.jobs"),
        sql=provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
    )
    return True


def stop_tracing() -> None:
    """Send the spans still waiting and take the instrumentation away again."""
    global _active
    if _active is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    HTTPXClientInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    EngineTracer.remove_all_event_listeners()  # type: ignore[no-untyped-call]
    _active.provider.shutdown()
    _active = None


def instrument_app(app: FastAPI) -> None:
    """A server span per request (outermost, so the request's log line is inside it), named by
    its route's template (`GET /api/v1/orders/{order_id}`)."""
    if _active is None:
        return
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.metrics import NoOpMeterProvider

    # Named by `_RouteNamedSpan` once routing has found the route, not by FastAPI's
    # instrumentation, which matches each request against every route of the app before it
    # starts (0.1 to 0.7 ms a request here, docs/performance.md).
    app.add_middleware(_RouteNamedSpan)
    app.add_middleware(
        OpenTelemetryMiddleware,
        tracer_provider=_active.provider,
        meter_provider=NoOpMeterProvider(),  # Prometheus counts requests (metrics.py)
        default_span_details=_method_only,
        server_request_hook=_url_without_query,
        # The URL is scheme://host/path, without the query string.
        excluded_urls=",".join(f"^[a-z]+://[^/]+{path}$" for path in _UNTRACED_PATHS),
        exclude_spans=["receive", "send"],  # a span per ASGI message is noise
    )


def _method_only(scope: Scope) -> tuple[str, dict[str, str]]:
    return str(scope["method"]), {}


def _url_without_query(span: trace.Span, scope: Scope) -> None:
    """The span's URL stops at the path, as the request's log line does: a query string may
    carry a secret (the token of an e-mailed link)."""
    url = (getattr(span, "attributes", None) or {}).get("http.url")
    if isinstance(url, str) and "?" in url:
        span.set_attribute("http.url", url.split("?", 1)[0])


class _RouteNamedSpan:
    """Names the request's server span by the route that serves it (the template, never the raw
    path) as the response starts: routing has left the route in the scope by then, and the span
    ends with the response's last byte. An unmatched request's span keeps the method alone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_naming_span(message: Message) -> None:
            if message["type"] == "http.response.start":
                template = route_template(scope)
                if template != UNMATCHED_ROUTE:
                    span = trace.get_current_span()
                    span.update_name(f"{scope['method']} {template}")
                    span.set_attribute("http.route", template)
            await send(message)

        await self.app(scope, receive, send_naming_span if scope["type"] == "http" else send)


def instrument_engine(engine: AsyncEngine) -> None:
    """A client span per SQL statement run on this engine."""
    if _active is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    # The instrumentor's own entry point instruments one set of engines per process; the app
    # makes two engines (and tests make many), so each gets its listeners here.
    connections = metrics.get_meter("computebill.db").create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    EngineTracer(_active.sql, engine.sync_engine, connections)  # type: ignore[no-untyped-call]


def current_trace_context() -> dict[str, str] | None:
    """The active span's context as W3C headers (`traceparent`, …), for a job to carry; None
    while tracing is off or no span is active."""
    if _active is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextmanager
def job_span(
    name: str, trace_context: Mapping[str, str] | None, **attributes: str | int
) -> Iterator[None]:
    """A span for one run of a job, a child of the span that asked for the job when its
    context came along (a periodic job's run starts a trace of its own)."""
    if _active is None:
        yield
        return
    parent = propagate.extract(trace_context) if trace_context else None
    with _active.jobs.start_as_current_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield


def add_trace_ids(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the active span's trace and span ids on the log line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict
