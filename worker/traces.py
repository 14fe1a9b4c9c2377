"""A job's trace: one per job, begun where the job was accepted (continuing a caller's
`traceparent`), its context kept in the record's `trace` field, so that the dispatcher, the
webhook intake, the landing, the poller and every delivery, in whatever process, continue it.

Spans are made through the OpenTelemetry API. Unless `imagedock.tracing` has set up the SDK (the
`tracing` extra, and the OpenTelemetry environment asking for traces), each is a no-op and a job
keeps no trace field.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

tracer = trace.get_tracer("imagedock")
W3C = TraceContextTextMapPropagator()


def traceparent() -> str:
    """The current span's context as a W3C `traceparent`; '' when nothing is traced."""
    carrier: dict[str, str] = {}
    W3C.inject(carrier)
    return carrier.get("traceparent", "")


def context_of(kept: str | None) -> Context | None:
    """The context a record's `trace` field keeps; None for a record with none."""
    return W3C.extract({"traceparent": kept}) if kept else None


def links_to_current() -> list[Link]:
    """A link to the span current now, if there is one: a span of the job's trace that
    something else started (a webhook's request, a poller's pass) points back to it."""
    current = trace.get_current_span().get_span_context()
    return [Link(current)] if current.is_valid else []


@contextmanager
def job_span(name: str, kept: str | None, **attributes: AttributeValue) -> Iterator[Span]:
    """A span of the job's trace, current while the block runs: a child of the context its
    record keeps (or of the current span, for a job with none), linked to the current span."""
    parent = context_of(kept)
    links = links_to_current() if parent is not None else []
    with tracer.start_as_current_span(
        name, context=parent, links=links, attributes=attributes
    ) as span:
        yield span
