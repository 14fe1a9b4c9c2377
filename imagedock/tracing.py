"""OpenTelemetry for imagedock's processes, from OpenTelemetry's own environment variables.

Traces are exported only when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an
OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); the
SDK reads the rest itself (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
`OTEL_EXPORTER_OTLP_HEADERS`, the batch processor's limits). Then the SDK is set up for the
process and httpx is instrumented; in the receiver, redis-py too (in a worker, arq reads its
queues many times a second, and each read would be a trace of its own), and the app is wrapped by
the Starlette instrumentation, which continues a caller's `traceparent`. Without the `tracing`
extra, or without those variables, nothing here runs and every span is the API's no-op.
"""

import atexit
import os
from typing import TYPE_CHECKING

import httpx
import structlog
from starlette.applications import Starlette

if TYPE_CHECKING:
    from opentelemetry.instrumentation.httpx import RequestInfo
    from opentelemetry.trace import Span

log = structlog.get_logger("tracing")
EXPORTERS = ("otlp", "console")
ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
HINT = "install imagedock[tracing] to export traces"
TRACING: list[str] = []  # the service this process traces as, once set up


def exporters_asked() -> list[str]:
    """The exporters the environment asks for: `OTEL_TRACES_EXPORTER`'s, or `otlp` where
    only an endpoint is set; none for `none` or nothing set."""
    named = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        return [name for name in (part.strip() for part in named.split(",")) if name != "none"]
    return ["otlp"] if any(os.environ.get(name) for name in ENDPOINTS) else []


def configure_tracing(service: str, *, redis: bool = False) -> bool:
    """Set the process up to export traces if the environment asks, each Redis command a span
    with `redis`; whether it did."""
    asked = exporters_asked()
    if not asked or TRACING:
        return bool(TRACING)
    unknown = sorted(set(asked) - set(EXPORTERS))
    if unknown:
        log.warning("tracing.unknown_exporter", exporters=unknown, known=list(EXPORTERS))
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("tracing.unavailable", reason=HINT)
        return False
    # OTEL_SERVICE_NAME, when set, names the service; else the process's role does.
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(named))
    if "otlp" in asked:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in asked:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # what is batched is sent before the process ends
    HTTPXClientInstrumentor().instrument(async_request_hook=origin_only)
    if redis:
        RedisInstrumentor().instrument()
    TRACING.append(service)
    log.info("tracing.on", service=service, exporters=asked)
    return True


async def origin_only(span: "Span", request: "RequestInfo") -> None:
    """An HTTP client span names its URL's origin only: a caller's webhook URL, a sink's, or a
    CDN's signed one carries its secret in the path or the query."""
    url = httpx.URL(str(request.url))
    origin = f"{url.scheme}://{url.netloc.decode()}"
    span.set_attribute("url.full", origin)
    span.set_attribute("http.url", origin)


def traced(app: Starlette) -> Starlette:
    """The receiver's app, with a server span for every request if tracing is on."""
    if TRACING:
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        StarletteInstrumentor.instrument_app(app)
    return app
