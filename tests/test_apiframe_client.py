"""The Apiframe client against the simulator over HTTP: each error, retry and fallback path."""

import email.utils
import socket
import time

import httpx
import pytest

from tests.support.apiframe import list_jobs
from tests.support.stack import API_KEY, Apiframe
from worker.apiframe import (
    ApiframeClient,
    ApiframeRequest,
    ApiframeStatusError,
    AuthenticationError,
    Forbidden,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    JobNotFound,
    RateLimited,
    ServerError,
    TransportError,
    UnreadableAnswer,
)
from worker.apiframe.client import parse_retry_after
from worker.status import Status, from_apiframe

GENERATE = "/v2/images/generate"
REQUEST = ApiframeRequest(prompt="a heron in fog", params={"aspect_ratio": "3:2"})


async def test_submit_and_follow_a_job(apiframe: Apiframe, client: ApiframeClient) -> None:
    """A submission returns the job id; the job is then readable, listed, and completes."""
    submission = await client.submit(REQUEST)
    await apiframe.sim.settle()
    job = await client.get_job(submission.job_id)
    page = await list_jobs(apiframe.url, status="COMPLETED", limit=10)
    assert submission.status == "QUEUED"
    assert (job.id, job.status, job.progress, job.terminal) == (
        submission.job_id,
        "COMPLETED",
        100,
        True,
    )
    assert [a.url for a in job.assets] == apiframe.sim.jobs[job.id].image_urls
    assert [listed.id for listed in page.jobs] == [job.id]
    assert (await client.me())["team"]["name"] == "Simulated team"


async def test_sends_the_key_a_user_agent_and_grok_params(
    apiframe: Apiframe, client: ApiframeClient
) -> None:
    """Requests carry the key, a User-Agent naming imagedock, and `grokImagineParams`."""
    await client.submit(REQUEST.model_copy(update={"webhook_url": "https://hooks.example/x"}))
    [received] = apiframe.sim.submissions()
    assert received.headers["x-api-key"] == API_KEY
    assert received.headers["user-agent"].startswith("imagedock/")
    assert b'"grokImagineParams":{"aspect_ratio":"3:2"}' in received.body
    assert b'"webhookUrl":"https://hooks.example/x"' in received.body


def test_callers_may_name_the_params_block_either_way() -> None:
    """`grokParams` and `grokImagineParams` from callers read as the same parameters."""
    for name in ("grokParams", "grokImagineParams"):
        request = ApiframeRequest.model_validate({"prompt": "x", name: {"aspect_ratio": "9:16"}})
        assert request.params == {"aspect_ratio": "9:16"}


@pytest.mark.parametrize("field", ["params_field", "webhook_field"])
async def test_falls_back_to_the_other_spelling_once_and_remembers(
    apiframe: Apiframe, client: ApiframeClient, field: str
) -> None:
    """A 400 calling a field unrecognized is retried once in the other spelling, which sticks."""
    setattr(
        apiframe.sim.config,
        field,
        {"params_field": "grokParams", "webhook_field": "webhook_url"}[field],
    )
    request = REQUEST.model_copy(update={"webhook_url": "https://hooks.example/x"})
    first = await client.submit(request, idempotency_key="fallback-1")
    second = await client.submit(request, idempotency_key="fallback-2")
    statuses = [r.status for r in apiframe.sim.submissions()]
    assert statuses == [400, 202, 202]
    assert len(apiframe.sim.jobs) == 2
    assert first.job_id != second.job_id


async def test_unrelated_400s_are_not_retried(apiframe: Apiframe, client: ApiframeClient) -> None:
    """A 400 about anything else surfaces at once, with Apiframe's details."""
    with pytest.raises(InvalidRequest) as caught:
        await client.submit(ApiframeRequest.model_construct(prompt="x", model="not-a-model"))
    assert "model" in caught.value.details
    assert caught.value.request_id
    assert len(apiframe.sim.submissions()) == 1


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (402, InsufficientCredits, "Insufficient credits"),
        (403, Forbidden, "error code: 1010"),
        (500, ServerError, "Internal Server Error"),
        (502, ServerError, "502 Bad Gateway"),
        (503, ServerError, "Service temporarily unavailable"),
    ],
)
async def test_error_statuses_map_to_errors(
    apiframe: Apiframe, client: ApiframeClient, status: int, error: type[Exception], text: str
) -> None:
    """Each status, JSON or not, becomes its error with the message and the request id."""
    apiframe.sim.fail_next(status, times=1)
    with pytest.raises(error) as caught:
        await client.submit(REQUEST)
    assert text in str(caught.value)
    assert "x-request-id req_" in str(caught.value)
    assert API_KEY not in str(caught.value)
    assert len(apiframe.sim.submissions()) == 1


async def test_insufficient_credits_carries_both_counts(
    apiframe: Apiframe, client: ApiframeClient
) -> None:
    """A 402 tells how many credits were needed and how many there are."""
    apiframe.sim.config.credits = 3
    with pytest.raises(InsufficientCredits) as caught:
        await client.submit(REQUEST)
    assert (caught.value.credits_required, caught.value.credits_available) == (10, 3)


async def test_bad_and_inactive_keys(apiframe: Apiframe) -> None:
    """An unknown key is an AuthenticationError, an inactive one Forbidden; neither is retried."""
    apiframe.sim.config.inactive_keys = ("afk_inactive",)
    for key, error in (("bad", AuthenticationError), ("afk_inactive", Forbidden)):
        async with ApiframeClient(apiframe.url, key) as client:
            with pytest.raises(error):
                await client.get_job("00000000-0000-0000-0000-000000000000")
    assert len(apiframe.sim.received) == 2


async def test_unknown_job_is_not_found(apiframe: Apiframe, client: ApiframeClient) -> None:
    """An unknown job id is a JobNotFound, not retried."""
    with pytest.raises(JobNotFound):
        await client.get_job("00000000-0000-0000-0000-000000000000")
    assert len(apiframe.sim.received) == 1


async def test_idempotency_conflict(apiframe: Apiframe, client: ApiframeClient) -> None:
    """Reusing a key with another body is an IdempotencyConflict; the same body replays."""
    first = await client.submit(REQUEST, idempotency_key="same")
    replay = await client.submit(REQUEST, idempotency_key="same")
    with pytest.raises(IdempotencyConflict):
        await client.submit(ApiframeRequest(prompt="other"), idempotency_key="same")
    assert first.job_id == replay.job_id
    assert len(apiframe.sim.jobs) == 1


async def test_429_surfaces_at_once_with_its_retry_after(
    apiframe: Apiframe, client: ApiframeClient
) -> None:
    """A rate limit is for the caller's layer to wait out: one request, and its Retry-After."""
    apiframe.sim.fail_next(429, times=5, retry_after="7")
    with pytest.raises(RateLimited) as caught:
        await client.me()
    assert caught.value.retry_after == 7.0
    assert caught.value.transient
    assert len(apiframe.sim.received) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_surfaces_at_once_as_transient(
    apiframe: Apiframe, client: ApiframeClient, status: int
) -> None:
    """A server error is not retried inside the call, even for a GET: arq or the caller waits."""
    apiframe.sim.fail_next(status, path="/v2/me")
    with pytest.raises(ServerError) as caught:
        await client.me()
    assert caught.value.transient
    assert [r.status for r in apiframe.sim.received] == [status]
    assert (await client.me())["team"]


async def test_501_is_not_transient(apiframe: Apiframe, client: ApiframeClient) -> None:
    """501 will not pass by waiting, so nothing retries it."""
    apiframe.sim.fail_next(501, path="/v2/me")
    with pytest.raises(ApiframeStatusError) as caught:
        await client.me()
    assert not caught.value.transient
    assert caught.value.status_code == 501


async def test_timeouts_retry_gets_but_not_unkeyed_submits(apiframe: Apiframe) -> None:
    """A timed-out GET is a blip, retried to the attempt cap; an unkeyed submit is tried once,
    a keyed one retried."""
    apiframe.sim.config.response_delay_seconds = 0.3
    async with ApiframeClient(apiframe.url, API_KEY, timeout=0.05) as client:
        with pytest.raises(TransportError):
            await client.me()
        with pytest.raises(TransportError):
            await client.submit(REQUEST)
        with pytest.raises(TransportError):
            await client.submit(REQUEST, idempotency_key="safe")
    paths = [r.path for r in apiframe.sim.received]
    assert paths.count("/v2/me") == 3
    assert paths.count(GENERATE) == 1 + 3


async def test_refused_connections_are_retried_then_surface() -> None:
    """With nothing listening, even a submit is retried (nothing was sent), then TransportError."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ApiframeClient(f"http://127.0.0.1:{port}", API_KEY) as client:
        with pytest.raises(TransportError) as caught:
            await client.submit(REQUEST)
    assert "ConnectError" in str(caught.value)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """`Retry-After` is read as seconds or as an HTTP date; garbage reads as unknown."""
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert parse_retry_after("12") == 12.0
    assert 25 < (parse_retry_after(later) or 0) <= 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_a_proxy_error_without_a_body(apiframe: Apiframe) -> None:
    """An error with an empty body still names its status."""
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    async with ApiframeClient(apiframe.url, API_KEY, transport=transport) as client:
        with pytest.raises(ServerError) as caught:
            await client.me()
    assert "500" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        {"jobId": "../../v2/me", "status": "QUEUED"},
        {"status": "QUEUED"},
        ["not", "an", "object"],
    ],
)
async def test_an_unreadable_answer_is_a_transient_error(apiframe: Apiframe, body: object) -> None:
    """A 2xx whose body is not what Apiframe publishes (a job id that is no UUID included) is
    an error the caller can retry, naming what is wrong, never a crash."""
    transport = httpx.MockTransport(lambda request: httpx.Response(202, json=body))
    async with ApiframeClient(apiframe.url, API_KEY, transport=transport) as client:
        with pytest.raises(UnreadableAnswer, match="cannot read") as caught:
            await client.submit(REQUEST, idempotency_key="k")
    assert caught.value.transient


def test_a_status_apiframe_has_not_published_is_taken_as_running() -> None:
    """`PENDING` moves nothing forward: it reads as the lowest running status."""
    assert from_apiframe("PENDING") == Status.QUEUED
    assert from_apiframe("COMPLETED") == Status.COMPLETED
