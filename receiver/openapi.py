"""`GET /openapi.json`: imagedock's API as OpenAPI 3.1, generated from the pydantic models the
handlers answer with, so it says what the code does. `tests/test_openapi.py` holds every route of
the app against this table, both ways, and the answers against their models."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver import schemas
from receiver.jobs import JobRequest
from worker.apiframe import WebhookEvent

REF = "#/components/schemas/{model}"
Answer = type[BaseModel] | str  # a model for JSON, or the media type of another answer


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answers: Mapping[int, Answer]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    token: bool = True  # needs `Authorization: Bearer <IMAGEDOCK_API_TOKEN>`
    tag: str = "jobs"
    refusals: tuple[int, ...] = field(default=(400,))


OPERATIONS = (
    Operation("POST", "/jobs", "Submit a job to Apiframe", {202: schemas.JobAccepted},
              body=JobRequest, refusals=(400, 402, 409, 413, 429, 502, 503)),
    Operation("GET", "/jobs", "List jobs, newest first, a page at a time",
              {200: schemas.JobPage}, query=schemas.JobsQuery),
    Operation("GET", "/jobs/{job_id}", "One job, by Apiframe job id or imagedock ref",
              {200: schemas.JobView}, query=schemas.JobQuery, refusals=(400, 404)),
    Operation("GET", "/jobs/{job_id}/log", "One job's timeline", {200: schemas.LogPage},
              refusals=(404,)),
    Operation("POST", "/jobs/track", "Track a job submitted elsewhere",
              {200: schemas.TrackAccepted, 202: schemas.TrackAccepted},
              body=schemas.TrackRequest, tag="operations", refusals=(400, 413)),
    Operation("POST", "/jobs/{job_id}/replay", "Land a job again and send its events again",
              {202: schemas.ReplayQueued}, tag="operations", refusals=(404,)),
    Operation("GET", "/log", "The job log of every job; ask for text/event-stream to follow it",
              {200: schemas.LogPage}, query=schemas.LogQuery, tag="log"),
    Operation("GET", "/events/dead", "Dead-lettered downstream events, newest first",
              {200: schemas.DeadLetters}, query=schemas.DeadLetterQuery, tag="operations"),
    Operation("POST", "/events/redrive", "Deliver every dead-lettered event again",
              {202: schemas.Redriven}, tag="operations", refusals=()),
    Operation("GET", "/stats", "The dashboard's counters", {200: schemas.Stats}, tag="operations",
              refusals=()),
    Operation("POST", "/webhooks/apiframe", "Apiframe's webhook callbacks",
              {200: schemas.WebhookAnswer, 202: schemas.WebhookAnswer}, body=WebhookEvent,
              token=False, tag="webhooks", refusals=(400, 401, 404, 408, 409, 413, 415, 503)),
    Operation("GET", "/healthz", "The process is up", {200: schemas.Health}, token=False,
              tag="operations", refusals=()),
    Operation("GET", "/readyz", "Ready for traffic: Redis answers", {200: schemas.Health},
              token=False, tag="operations", refusals=(503,)),
    Operation("GET", "/metrics", "Prometheus metrics", {200: "text/plain"}, token=False,
              tag="operations", refusals=()),
    Operation("GET", "/openapi.json", "This document", {200: "application/json"}, token=False,
              tag="operations", refusals=()),
    Operation("GET", "/", "The dashboard", {200: "text/html"}, token=False, tag="dashboard",
              refusals=()),
    Operation("GET", "/static/{path}", "The dashboard's scripts and styles", {200: "text/plain"},
              token=False, tag="dashboard", refusals=(404,)),
)  # fmt: skip


def models_of(operations: tuple[Operation, ...]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (schemas.Problem, "serialization"): None
    }
    for operation in operations:
        for request in (operation.body, operation.query):
            if request is not None:
                found[(request, "validation")] = None
        for answer in operation.answers.values():
            if not isinstance(answer, str):
                found[(answer, "serialization")] = None
    return list(found)


@cache
def document() -> dict[str, Any]:
    refs, definitions = models_json_schema(models_of(OPERATIONS), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = describe(operation, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "imagedock",
            "version": "1",
            "description": "Image jobs submitted to Apiframe, their webhooks taken, their "
            "images landed in S3, and the job log that follows them.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def describe(operation: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, answer in operation.answers.items():
        if isinstance(answer, str):
            answers[str(status)] = {"description": "OK", "content": {answer: {}}}
        else:
            schema = refs[(answer, "serialization")]
            answers[str(status)] = {
                "description": (answer.__doc__ or answer.__name__).strip().splitlines()[0],
                "content": {"application/json": {"schema": schema}},
            }
    problem = {"application/json": {"schema": refs[(schemas.Problem, "serialization")]}}
    # Every operation behind the token reads Redis, and answers 503 while Redis does not.
    # The limits on a request's target and headers come first, for every operation.
    for status in (*operation.refusals, 414, 431, *((401, 503) if operation.token else ())):
        answers[str(status)] = {"description": "refused: the error says why", "content": problem}
    described: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": operation_id(operation),
        "tags": [operation.tag],
        "parameters": parameters(operation),
        "responses": answers,
        "security": [{"bearer": []}] if operation.token else [],
    }
    if operation.body is not None:
        schema = refs[(operation.body, "validation")]
        described["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return described


def parameters(operation: Operation) -> list[dict[str, Any]]:
    found = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", operation.path)
    ]
    if operation.query is not None:
        schema = operation.query.model_json_schema(by_alias=True, ref_template=REF)
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            described = {"name": name, "in": "query", "required": name in required}
            found.append({**described, "schema": prop})
    return found


def operation_id(operation: Operation) -> str:
    words = re.sub(r"[{}]", "", operation.path).replace(".", "_").strip("/").split("/")
    return "_".join([operation.method.lower(), *[word for word in words if word]]) or "page"


async def openapi(request: Request) -> Response:
    return JSONResponse(document())
