"""`/openapi.json` describes every route of the app, no more, and every answer the app gives
matches the document: its status is listed and its body fits the schema given for it."""

import uuid
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Mount, Route

from imagedock.clients import open_deps
from receiver.app import create_app
from receiver.openapi import document
from tests.support.stack import Stack

JSON = {"content-type": "application/json"}
Call = tuple[str, str, dict[str, Any]]  # method, URL path, httpx arguments


def app_operations(stack: Stack) -> set[tuple[str, str]]:
    operations = set()
    for route in create_app(stack.settings, open_deps).routes:
        if isinstance(route, Route):
            methods = (route.methods or {"GET"}) - {"HEAD"}
            operations |= {(method, route.path) for method in methods}
        elif isinstance(route, Mount) and route.path != "/v2":  # Apiframe's: `test_v2_contract`
            operations.add(("GET", route.path + "/{path}"))
    return operations


def documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}


def test_the_document_is_valid_openapi() -> None:
    """The generated document passes the OpenAPI 3.1 validator."""
    validate(document())


async def test_every_route_is_documented_and_every_documented_route_exists(stack: Stack) -> None:
    """The app's routes and the document's operations are the same set."""
    assert app_operations(stack) == documented(document())


async def test_the_served_document_is_the_generated_one(stack: Stack) -> None:
    """`GET /openapi.json` answers without a token with the document."""
    async with httpx.AsyncClient(base_url=stack.receiver_url) as anonymous:
        answer = await anonymous.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.json() == document()


# Apiframe cannot send the token, probes and scrapers should not need it, and the dashboard's
# page and assets hold no data: every other operation is refused without it.
OPEN = {
    ("POST", "/webhooks/apiframe"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
    ("GET", "/openapi.json"), ("GET", "/"), ("GET", "/static/{path}"),
}  # fmt: skip


async def test_only_the_open_operations_answer_without_the_token(stack: Stack) -> None:
    """Without a token every operation is refused with the bearer challenge but the open ones,
    and the document asks for the token on exactly the others."""
    spec = document()
    async with httpx.AsyncClient(base_url=stack.receiver_url) as anonymous:
        for method, template in documented(spec):
            path = template.replace("{job_id}", "no-such-job").replace("{path}", "dashboard.js")
            answer = await anonymous.request(method, path)
            challenged = answer.headers.get("www-authenticate", "").startswith("Bearer")
            secured = spec["paths"][template][method.lower()]["security"] != []
            assert challenged == secured == ((method, template) not in OPEN), (method, template)


def template_of(spec: dict[str, Any], method: str, path: str) -> str:
    """The document's path template that `path` is an instance of."""
    parts = path.split("?")[0].strip("/").split("/")
    for template, operations in spec["paths"].items():
        pieces = template.strip("/").split("/")
        if method.lower() not in operations or len(pieces) != len(parts):
            continue
        if all(p == q or p.startswith("{") for p, q in zip(pieces, parts, strict=True)):
            return str(template)
    raise AssertionError(f"{method} {path} is not in the document")


async def test_every_answer_fits_the_document(stack: Stack) -> None:
    """Each operation, called as a client would (and refused as a client may be), answers with
    a documented status and a body that fits that status's schema; every operation is called."""
    spec = document()
    job = await stack.submit(metadata={"order": "1"})
    await stack.run_worker()
    job_id = job["jobId"]
    calls: list[Call] = [
        ("POST", "/jobs", {"json": {"prompt": "a fox", "model": "grok-imagine-image"}}),
        ("POST", "/jobs", {"json": {"prompt": ""}}),
        ("POST", "/jobs/batch", {"json": {"jobs": [{"prompt": "a hen"}, {"prompt": ""}]}}),
        ("POST", "/jobs/batch", {"json": {"jobs": []}}),
        ("GET", "/jobs", {"params": {"limit": 5, "presign": 30}}),
        ("GET", "/jobs", {"params": {"status": "NOPE"}}),
        ("GET", f"/jobs/{job_id}", {"params": {"presign": 30}}),
        ("GET", "/jobs/no-such-job", {}),
        ("DELETE", f"/jobs/{job_id}", {}),
        ("DELETE", "/jobs/no-such-job", {}),
        ("GET", f"/jobs/{job_id}/log", {}),
        ("GET", "/jobs/no-such-job/log", {}),
        ("POST", "/jobs/track", {"json": {"jobId": str(uuid.uuid4())}}),
        ("POST", "/jobs/track", {"json": {"jobId": "nope"}}),
        ("POST", f"/jobs/{job_id}/replay", {}),
        ("POST", "/jobs/no-such-job/replay", {}),
        ("POST", "/jobs/replay", {"json": {"status": "LANDED", "since": 0, "dryRun": True}}),
        ("POST", "/jobs/replay", {"json": {"status": "LANDED", "since": "never"}}),
        ("POST", "/jobs/replay", {"json": {"status": "LANDED", "since": 0}}),
        ("GET", "/jobs/replay/no-such-replay", {}),
        ("GET", "/log", {"params": {"limit": 3}}),
        ("GET", "/events/dead", {}),
        ("POST", "/events/redrive", {}),
        ("GET", "/stats", {}),
        ("POST", "/webhooks/apiframe", {"json": {"jobId": str(uuid.uuid4()), "status": "QUEUED"}}),
        ("POST", "/webhooks/apiframe", {"content": b"{", "headers": JSON}),
        ("GET", "/healthz", {}),
        ("GET", "/readyz", {}),
        ("GET", "/metrics", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/", {}),
        ("GET", "/static/dashboard.js", {}),
    ]  # fmt: skip
    called = set()
    for method, path, arguments in calls:
        answer = await stack.api.request(method, path, **arguments)
        template = template_of(spec, method, path)
        called.add((method, template))
        check_answer(spec, method, template, answer)
        if (method, path, answer.status_code) == ("POST", "/jobs/replay", 202):
            progress = await stack.api.get(f"/jobs/replay/{answer.json()['id']}")
            check_answer(spec, "GET", "/jobs/replay/{bulk_id}", progress)
    async with httpx.AsyncClient(base_url=stack.receiver_url) as anonymous:
        refused = await anonymous.get("/jobs")
    assert refused.status_code == 401
    check_answer(spec, "GET", "/jobs", refused)
    assert called == documented(spec)


def check_answer(spec: dict[str, Any], method: str, template: str, answer: httpx.Response) -> None:
    operation = spec["paths"][template][method.lower()]
    where = f"{method} {template} answered {answer.status_code}: {answer.text[:300]}"
    assert str(answer.status_code) in operation["responses"], where
    content = operation["responses"][str(answer.status_code)]["content"]
    media_type = answer.headers["content-type"].split(";")[0]
    if "application/json" in content and "schema" in content["application/json"]:
        assert media_type == "application/json", where
        schema = {**content["application/json"]["schema"], "components": spec["components"]}
        problems = [e.message for e in Draft202012Validator(schema).iter_errors(answer.json())]
        assert not problems, (where, problems)
    else:
        assert media_type in content or media_type.startswith("text/"), where


async def test_starlettes_own_refusals_are_json_too(stack: Stack) -> None:
    """No such route answers 404, and a method a route does not take 405 with `Allow`, both in
    the API's JSON error shape."""
    missing = await stack.api.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.json()["error"]
    wrong = await stack.api.delete("/jobs")
    assert wrong.status_code == 405
    assert wrong.json()["error"]
    assert wrong.headers["allow"]


async def test_a_log_position_redis_cannot_read_is_refused(stack: Stack) -> None:
    """A stream id past 64 bits is refused with 400, for the JSON log and the event stream."""
    beyond = "99999999999999999999-0"
    listed = await stack.api.get("/log", params={"after": beyond})
    assert listed.status_code == 400
    assert "after" in listed.json()["details"]
    streamed = await stack.api.get(
        "/log", headers={"Accept": "text/event-stream", "Last-Event-ID": beyond}
    )
    assert streamed.status_code == 400
