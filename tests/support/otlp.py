"""An OTLP/HTTP trace collector for tests: what imagedock's processes export, decoded with
OpenTelemetry's own protobuf classes and kept as plain spans."""

import gzip
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    links: tuple[str, ...]  # the trace ids of the spans it links to
    attributes: dict[str, object]
    start: int  # ns since the epoch
    end: int


@dataclass
class Collector:
    spans: list[Span] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/traces", self.traces, methods=["POST"])])

    async def traces(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
            named = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                self.spans += [
                    Span(
                        named.get("service.name", ""),
                        span.name,
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        tuple(link.trace_id.hex() for link in span.links),
                        {a.key: value_of(a.value) for a in span.attributes},
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                    )
                    for span in scope.spans
                ]
        answer = ExportTraceServiceResponse().SerializeToString()
        return Response(answer, media_type="application/x-protobuf")

    def of_trace(self, trace_id: str) -> list[Span]:
        return [span for span in self.spans if span.trace_id == trace_id]


def tree(spans: list[Span]) -> str:
    """The spans as an indented tree, each with its service, start and duration (ms, from the
    first span's start): what a tracing UI's waterfall shows."""
    ids = {span.span_id for span in spans}
    children: dict[str, list[Span]] = {}
    for span in sorted(spans, key=lambda found: found.start):
        children.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    first = min((span.start for span in spans), default=0)
    lines: list[str] = []

    def add(parent: str, depth: int) -> None:
        for span in children.get(parent, []):
            at, took = (span.start - first) / 1e6, (span.end - span.start) / 1e6
            label = "  " * depth + span.name
            lines.append(f"{label:<44} {span.service:<20} {at:9.1f} ms {took:8.1f} ms")
            add(span.span_id, depth + 1)

    add("", 0)
    return "\n".join(lines)


def value_of(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None
