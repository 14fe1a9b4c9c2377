"""Fuzzing: the API from its own OpenAPI document with schemathesis, and the webhook parser and
signature check with hypothesis. Whatever arrives, the receiver answers without a server error,
every refusal is a 4xx whose JSON `error` says what is wrong, and nothing that is not a job's own
signed webhook moves a job."""

import asyncio
import json
import os
import string
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckFunction
from schemathesis.specs.openapi.checks import positive_data_acceptance

from imagedock.clients import open_deps
from receiver.app import create_app
from receiver.openapi import document
from simulator import Simulator
from simulator.local_s3 import LocalS3
from simulator.serving import bound_socket, serving
from tests.support.stack import API_KEY, API_TOKEN, dispatcher_of, fast_config, stack_settings
from tests.support.waiting import wait_for
from worker.apiframe.signatures import SIGNATURE, Variant, sign, verify_signature

HOOK = "/webhooks/apiframe"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}

# Examples are drawn afresh on a developer's machine and replayed from a local database; CI draws
# the same ones every run and keeps no database.
settings.register_profile("imagedock-dev", deadline=None)
settings.register_profile("imagedock-ci", deadline=None, database=None, derandomize=True)
settings.load_profile(
    os.environ.get("IMAGEDOCK_HYPOTHESIS_PROFILE")
    or ("imagedock-ci" if os.environ.get("CI") else "imagedock-dev")
)


@dataclass
class Live:
    """The receiver with the simulator behind it, served on an event loop of its own thread,
    so that synchronous clients (schemathesis, hypothesis) can call it from the test's."""

    url: str
    sim: Simulator


@pytest.fixture(scope="module")
def live(redis_url: str, s3_server: LocalS3) -> Iterator[Live]:
    ready: Future[Live] = Future()
    stop = threading.Event()

    async def serve() -> None:
        simulator = Simulator(fast_config())
        async with serving(simulator.app, sock=bound_socket()) as apiframe_url:
            sock = bound_socket()
            config = stack_settings(redis_url, apiframe_url, sock, s3_server)
            async with open_deps(config) as deps:
                await deps.redis.flushdb()
                async with (
                    serving(create_app(config, open_deps), sock=sock) as url,
                    dispatcher_of(deps),
                ):
                    ready.set_result(Live(url, simulator))
                    while not stop.is_set():
                        await asyncio.sleep(0.05)
                await deps.redis.flushdb()

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=main, name="live-stack", daemon=True)
    thread.start()
    try:
        yield ready.result(timeout=60)
    finally:
        stop.set()
        thread.join(timeout=60)


# 5a. The HTTP API, from the OpenAPI document it serves.


# The document `GET /openapi.json` serves (held to it below), loaded when pytest collects, so
# that each operation is a test of its own. (schemathesis 4.32's `from_fixture` needs a pytest
# node's `_nodeid`, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_dict(document())
schema.config.generation.update(max_examples=25, database="none")
# Data that breaks the schema may be refused by the limits every request meets before a route
# reads it (its body, its target, its headers): refusals too.
rejections = schema.config.checks.negative_data_rejection
rejections.expected_statuses = [*rejections.expected_statuses, "413", "414", "431"]


def test_the_fuzzed_document_is_the_one_served(live: Live) -> None:
    """The document fuzzed here is the one `GET /openapi.json` serves."""
    assert httpx.get(f"{live.url}/openapi.json").json() == document()


@schema.parametrize()
# schemathesis draws large and filtered data on purpose: no health check applies.
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_without_a_server_error(case: Case[Any], live: Live) -> None:
    """Every operation, called with examples drawn from its schema and with ones that break it,
    answers as its document says, never with a 5xx, and refuses with a 4xx whose JSON body has
    an `error` message."""
    # The drawn bearer token gives way to the real one; a case drawn without one (to see it
    # refused) is sent without one.
    drawn = {name.lower() for name in case.headers or {}}
    response = case.call(base_url=live.url, headers=AUTH if "authorization" in drawn else None)
    excluded: list[CheckFunction] = []
    if case.path == "/jobs" and case.method == "GET" and "cursor" in (case.query or {}):
        # Any string fits the schema of a cursor, which is opaque; only those this service
        # handed out decode, and the others are refused with the documented 400.
        excluded.append(positive_data_acceptance)
    if case.path == "/jobs" and case.method == "POST":
        # The document gives what every model shares (the longest prompt any model takes);
        # what one model takes is checked per model, and by Apiframe, with the 400's details.
        excluded.append(positive_data_acceptance)
    if case.path == "/jobs/replay" and case.method == "POST":
        # A filter of the right shape may select no job: the documented 400 names its field.
        excluded.append(positive_data_acceptance)
    case.validate_response(response, excluded_checks=excluded)
    if 400 <= response.status_code < 500:
        assert response.headers.get("content-type") == ["application/json"], response.text
        assert isinstance(response.json()["error"], str)
        assert response.json()["error"]


# 5b. The webhook parser and the signature check, with hypothesis.

API_KEYS = st.text(alphabet=string.ascii_letters + string.digits + "_-", max_size=40).map(
    lambda tail: "afk_" + tail
)
VARIANTS: tuple[Variant, ...] = ("A", "B")
HEX_SIGNATURE = st.from_regex(r"(sha256=)?[0-9a-fA-F]{62,66}", fullmatch=True)


@given(
    body=st.binary(max_size=2048),
    header=st.one_of(st.text(max_size=120), HEX_SIGNATURE),
    keys=st.lists(API_KEYS, max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_verify_signature_answers_any_header_without_raising(
    body: bytes, header: str, keys: list[str]
) -> None:
    """Any header, body and keys: `verify_signature` returns None or a variant, never raises,
    and matches only a header that is this body's signature under one of the keys."""
    variant = verify_signature(body, header, keys)
    assert variant in (None, "A", "B")
    given_digest = header.strip().lower()
    genuine = {sign(body, key, v) for key in keys for v in VARIANTS}
    shaped = SIGNATURE.fullmatch(given_digest) is not None
    matches = shaped and "sha256=" + given_digest.removeprefix("sha256=") in genuine
    assert (variant is not None) == matches


@given(
    body=st.binary(max_size=2048),
    keys=st.lists(API_KEYS, min_size=1, max_size=3),
    data=st.data(),
)
@settings(max_examples=200, deadline=None)
def test_a_genuine_signature_verifies_however_written_and_no_altered_one_does(
    body: bytes, keys: list[str], data: st.DataObject
) -> None:
    """A body's real signature verifies with or without its prefix, in any letter case and
    with surrounding spaces; changing any one of its digits, or one byte of the body, fails."""
    key = data.draw(st.sampled_from(keys))
    variant = data.draw(st.sampled_from(VARIANTS))
    digest = sign(body, key, variant).removeprefix("sha256=")
    prefix = data.draw(st.sampled_from(["", "sha256=", "SHA256="]))
    written = "".join(c.upper() if data.draw(st.booleans()) else c for c in digest)
    padded = data.draw(st.sampled_from(["", " ", "\t"])) + prefix + written + " "
    assert verify_signature(body, padded, keys) is not None
    at = data.draw(st.integers(0, 63))
    other = data.draw(st.sampled_from([c for c in "0123456789abcdef" if c != digest[at]]))
    assert verify_signature(body, digest[:at] + other + digest[at + 1 :], keys) is None
    if body:
        i = data.draw(st.integers(0, len(body) - 1))
        altered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
        assert verify_signature(altered, digest, keys) is None


# What a refusal must say, by status: the `error` names what is wrong.
EXPLAINED = {
    400: ("webhook body", "client left"),
    401: ("signature",),
    404: ("ref", "job id"),
    409: ("not this submission",),
    413: ("over",),
    415: ("application/json",),
    431: ("headers are over",),
}
# Header values h11 will send: visible ASCII and obs-text, with spaces and tabs inside.
FIELD_BYTES = [bytes([b]) for b in [*range(0x21, 0x7F), *range(0x80, 0x100)]]
FIELD_VALUE = st.builds(
    lambda first, middle: first + middle,
    st.sampled_from(FIELD_BYTES),
    st.lists(st.sampled_from([*FIELD_BYTES, b" ", b"\t"]), max_size=80).map(b"".join),
).map(lambda value: value.rstrip(b" \t"))
HEADER_NAME = st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
STATUSES = st.sampled_from(["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"])


def webhook_like(job_ids: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Objects shaped more or less like a webhook body, and any JSON at all."""
    shaped = st.fixed_dictionaries(
        {"jobId": job_ids, "status": STATUSES | st.text(max_size=12)},
        optional={
            "event": st.text(max_size=12),
            "progress": st.integers(-5, 105) | JSON,
            "result": JSON | st.fixed_dictionaries({"images": st.lists(st.text(max_size=30))}),
            "error": JSON,
            "model": JSON,
        },
    )
    return shaped | JSON


@pytest.fixture(scope="module")
def web(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


def assert_explained(response: httpx.Response) -> None:
    """Not a server error; a refusal is JSON whose `error` says what is wrong."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", response.text
        message = response.json()["error"]
        assert any(words in message for words in EXPLAINED[response.status_code]), message


@given(
    body=st.binary(max_size=4096)
    | webhook_like(st.text(max_size=40)).map(lambda d: json.dumps(d).encode()),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]
    )
    | FIELD_VALUE,
    signature=st.none() | FIELD_VALUE | HEX_SIGNATURE.map(str.encode),
    ref=st.none() | st.text(max_size=40) | st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    extra=st.dictionaries(HEADER_NAME, FIELD_VALUE, max_size=3),
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_bytes_posted_as_a_webhook_are_answered_without_a_server_error(
    web: httpx.Client,
    body: bytes,
    content_type: bytes | str,
    signature: bytes | None,
    ref: str | None,
    extra: dict[str, bytes],
) -> None:
    """Arbitrary bodies, media types, signatures, refs and extra headers posted to the webhook
    endpoint: never a 5xx, and every refusal a 4xx whose JSON `error` says what is wrong."""
    headers = {
        name.lower().encode(): value
        for name, value in extra.items()
        if name.lower() not in ("content-length", "transfer-encoding", "host")
    }
    headers[b"content-type"] = (
        content_type if isinstance(content_type, bytes) else content_type.encode()
    )
    if signature is not None:
        headers[b"x-webhook-signature"] = signature
    params = {} if ref is None else {"ref": ref}
    assert_explained(web.post(HOOK, content=body, headers=headers, params=params))


@dataclass(frozen=True)
class Standing:
    """Two submitted jobs that stay unfinished at Apiframe: what no stray webhook may move."""

    a: dict[str, Any]
    b: dict[str, Any]


@pytest.fixture(scope="module")
def standing(live: Live) -> Standing:
    answers = []
    for name in ("a", "b"):
        live.sim.plan_next_job(stall=True)
        response = httpx.post(f"{live.url}/jobs", json={"prompt": name}, headers=AUTH, timeout=30)
        assert response.status_code == 202, response.text
        ref = response.json()["ref"]

        def submitted(ref: str = ref) -> bool:
            job = httpx.get(f"{live.url}/jobs/{ref}", headers=AUTH, timeout=30).json()
            return job["jobId"] is not None

        wait_for(submitted, f"job {name} submitted", 10)
        answers.append(httpx.get(f"{live.url}/jobs/{ref}", headers=AUTH, timeout=30).json())
    return Standing(*answers)


def snapshot(web: httpx.Client, job_id: str) -> tuple[Any, ...]:
    job = web.get(f"/jobs/{job_id}", headers=AUTH).json()
    log = web.get(f"/jobs/{job_id}/log", headers=AUTH).json()["entries"]
    return (job["status"], job["progress"], job["updatedAt"], job["lastWebhookAt"], len(log))


@given(data=st.data())
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_signed_random_json_moves_no_job_that_exists(
    web: httpx.Client, standing: Standing, data: st.DataObject
) -> None:
    """Signed JSON of any shape, naming job A, an unknown job or nothing, posted on job B's ref,
    a malformed ref, or none: neither A nor B changes, and the answer is no server error."""
    a, b = standing.a, standing.b
    before = [snapshot(web, a["jobId"]), snapshot(web, b["jobId"])]
    job_ids = st.sampled_from([a["jobId"]]) | st.uuids().map(str) | st.text(max_size=40)
    document = data.draw(webhook_like(job_ids))
    ref = data.draw(
        st.sampled_from([b["ref"], None]) | st.text(max_size=40).filter(lambda r: len(r) != 32)
    )
    # Job A's own webhook without a ref (an empty one is none) is A's to move: not random.
    assume(not (not ref and isinstance(document, dict) and document.get("jobId") == a["jobId"]))
    body = json.dumps(document).encode()
    headers = {"content-type": "application/json", "x-webhook-signature": sign(body, API_KEY)}
    params = {} if ref is None else {"ref": ref}
    response = web.post(HOOK, content=body, headers=headers, params=params)
    assert_explained(response)
    assert [snapshot(web, a["jobId"]), snapshot(web, b["jobId"])] == before


@given(position=st.text(max_size=40) | st.from_regex(r"[0-9]{1,25}-[0-9]{1,25}", fullmatch=True))
@example(position="")
@example(position="18446744073709551615-18446744073709551615")  # nothing can come after it
@example(position="18446744073709551616-0")  # one past what Redis holds
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_log_position_is_read_or_refused_never_a_server_error(
    web: httpx.Client, position: str
) -> None:
    """`GET /log?after=` with any text is read, or refused with a 400 naming `after`."""
    listed = web.get("/log", params={"after": position}, headers=AUTH)
    assert listed.status_code in (200, 400), listed.text
    if listed.status_code == 400:
        assert "after" in json.dumps(listed.json())


@pytest.mark.parametrize(
    ("last_event_id", "statuses"),
    [
        ("0-0", {200}),
        ("", {200}),  # none: from now on
        ("18446744073709551615-18446744073709551615", {200, 400}),  # the largest id Redis holds
        ("1700000000000", {400}),
        ("latest", {400}),
        ("99999999999999999999-0", {400}),  # past what an id can hold
        ("1-99999999999999999999", {400}),
    ],
)
def test_a_log_stream_starts_only_from_an_id_redis_can_read(
    live: Live, last_event_id: str, statuses: set[int]
) -> None:
    """`GET /log` as an event stream resumes from any id Redis can hold, and refuses with a 400
    any other Last-Event-ID, instead of starting a stream that breaks on its first read."""
    headers = {**AUTH, "accept": "text/event-stream", "last-event-id": last_event_id}
    timeout = httpx.Timeout(30, read=1.0)
    with (
        httpx.Client(base_url=live.url, timeout=timeout) as client,
        client.stream("GET", "/log", headers=headers) as streamed,
    ):
        assert streamed.status_code in statuses
        if streamed.status_code == 400:
            streamed.read()
            assert "Last-Event-ID" in streamed.json()["error"]
        else:
            # A live stream waits for entries; one that broke on its first read ends at once.
            with pytest.raises(httpx.ReadTimeout):
                for _ in streamed.iter_lines():
                    pass
