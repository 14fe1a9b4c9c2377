"""`GET /openapi.json`: imagedock's API as OpenAPI 3.1, generated from the route table
(`receiver/routes.py`) and the pydantic models the handlers answer with, so it says what the code
does. `tests/test_openapi.py` holds every route of the app against this document, both ways, and
the answers against their models."""

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver import schemas

if TYPE_CHECKING:
    # The table lists this module's `openapi` handler: importing the table here would be a
    # cycle, so `document` reads it when first called.
    from receiver.routes import Operation

REF = "#/components/schemas/{model}"


def models_of(operations: Iterable["Operation"]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
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
    from receiver.routes import OPERATIONS

    refs, definitions = models_json_schema(models_of(OPERATIONS), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = describe(operation, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "imagedock",
            "version": "1",
            "description": "Image, video and music jobs submitted to Apiframe, their webhooks "
            "taken, their files landed in S3, and the job log that follows them. Apiframe's own "
            "v2 API is also served, under /v2/, for its callers' keys: Apiframe's OpenAPI "
            "document describes it.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def describe(operation: "Operation", refs: Mapping[Any, Any]) -> dict[str, Any]:
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
    # Every operation behind the token reads Redis: 503 while Redis does not answer, 500 if it
    # refuses a command.
    # The limits on a request's target and headers come first, for every operation.
    for status in (*operation.refusals, 414, 431, *((401, 500, 503) if operation.token else ())):
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


def parameters(operation: "Operation") -> list[dict[str, Any]]:
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


def operation_id(operation: "Operation") -> str:
    words = re.sub(r"[{}]", "", operation.path).replace(".", "_").strip("/").split("/")
    return "_".join([operation.method.lower(), *[word for word in words if word]]) or "page"


async def openapi(request: Request) -> Response:
    return JSONResponse(document())
