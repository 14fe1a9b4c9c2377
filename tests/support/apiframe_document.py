"""Apiframe's own OpenAPI document (as its first-party SDK ships it), to hold imagedock's `/v2/`
answers against: a status the document lists for the operation, and a body its schema takes."""

import json
from functools import cache
from typing import Any

import httpx
from jsonschema import Draft202012Validator, FormatChecker

from tests.support import ROOT

SDK = ROOT.parent / "shared" / "apiframe-sdk"  # a build of Apiframe's SDK, beside the checkout
DOCUMENT = SDK / "openapi.json"


def document_missing() -> str | None:
    """Why the document cannot be read here, or None."""
    if DOCUMENT.is_file():
        return None
    return f"Apiframe's OpenAPI document is not at {DOCUMENT} (see {SDK / 'SOURCE'})"


@cache
def document() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return found


def inlined(schema: Any) -> Any:
    """`schema` with every `#/components/schemas/...` reference replaced by what it names."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return inlined(document()["components"]["schemas"][ref.rsplit("/", 1)[1]])
        return {key: inlined(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inlined(item) for item in schema]
    return schema


def fits(method: str, template: str, answer: httpx.Response) -> dict[str, Any]:
    """Assert that `answer` is one the document allows `method template` to give; its JSON."""
    operation = document()["paths"][template][method.lower()]
    listed = operation["responses"]
    assert str(answer.status_code) in listed, (method, template, answer.status_code, answer.text)
    body: dict[str, Any] = answer.json()
    schema = listed[str(answer.status_code)]["content"]["application/json"]["schema"]
    validator = Draft202012Validator(inlined(schema), format_checker=FormatChecker())
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not problems, (method, template, answer.status_code, problems)
    return body
