"""The simulator's webhook sender and each delivery fault it can inject."""

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.serving import serving
from tests.support.stack import API_KEY, Apiframe, Sink
from worker.apiframe.models import MODEL as GROK
from worker.apiframe.signatures import verify_signature

GENERATE = "/v2/images/generate"


async def submit(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink, **extra: Any
) -> tuple[httpx.Response, str]:
    body = {"model": GROK, "prompt": "a red kite", "webhookUrl": sink.url, **extra}
    response = await http.post(apiframe.url + GENERATE, json=body)
    return response, response.json()["jobId"]


def events(sink: Sink) -> list[dict[str, Any]]:
    return [json.loads(body) for body in sink.bodies()]


@pytest.mark.parametrize("variant", ["A", "B"])
async def test_webhooks_are_signed_with_the_chosen_variant(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink, variant: str
) -> None:
    """Every delivery carries a signature over its raw body that verifies as the chosen variant."""
    apiframe.sim.config.signature_variant = variant  # type: ignore[assignment]
    _, job_id = await submit(apiframe, http, sink)
    await apiframe.sim.settle()
    assert sink.calls
    for headers, body in sink.calls:
        assert verify_signature(body, headers["x-webhook-signature"], [API_KEY]) == variant
        assert headers["x-webhook-event"] == json.loads(body)["event"]
    assert events(sink)[-1]["jobId"] == job_id


async def test_events_follow_the_lifecycle_and_the_subscription(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink
) -> None:
    """All three events by default; only the subscribed ones when `webhookEvents` is given."""
    _, everything = await submit(apiframe, http, sink)
    _, terminal_only = await submit(apiframe, http, sink, webhookEvents=["completed", "failed"])
    await apiframe.sim.settle()
    by_job: dict[str, list[str]] = {}
    for event in events(sink):
        by_job.setdefault(event["jobId"], []).append(event["event"])
    assert by_job[everything] == ["progress"] * 3 + ["completed"]
    assert by_job[terminal_only] == ["completed"]
    completed = events(sink)[-1]
    assert completed["result"]["images"][0].endswith(".png")
    assert completed["status"] == "COMPLETED"
    assert completed["creditCost"] == 10


async def test_failed_jobs_send_a_failed_event(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink
) -> None:
    """A failed job's webhook carries its error and no result."""
    apiframe.sim.config.failure_rate = 1.0
    await submit(apiframe, http, sink, webhookEvents=["failed"])
    await apiframe.sim.settle()
    [event] = events(sink)
    assert (event["event"], event["status"]) == ("failed", "FAILED")
    assert event["error"] == apiframe.sim.config.failure_message
    assert "result" not in event


async def test_drop_sends_nothing(apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink) -> None:
    """With every delivery dropped, the job completes and no webhook arrives."""
    apiframe.sim.config.drop_rate = 1.0
    _, job_id = await submit(apiframe, http, sink)
    await apiframe.sim.settle()
    assert sink.calls == []
    assert apiframe.sim.jobs[job_id].status == "COMPLETED"


async def test_duplicates_arrive_together(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink
) -> None:
    """`duplicates=n` sends n identical copies of each event."""
    apiframe.sim.config.duplicates = 5
    await submit(apiframe, http, sink, webhookEvents=["completed"])
    await apiframe.sim.settle()
    assert len(sink.calls) == 5
    assert len(set(sink.bodies())) == 1


async def test_reorder_sends_progress_after_completed(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink
) -> None:
    """With `reorder`, a stale progress event follows the terminal one, subscribed or not."""
    apiframe.sim.config.reorder = True
    await submit(apiframe, http, sink, webhookEvents=["completed"])
    await apiframe.sim.settle()
    assert [event["event"] for event in events(sink)] == ["completed", "progress"]
    assert events(sink)[1]["status"] == "PROCESSING"


async def test_delay_holds_each_delivery(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink
) -> None:
    """A delayed delivery has not arrived when the job completes, and arrives later."""
    apiframe.sim.config.delay_seconds = 0.5
    _, job_id = await submit(apiframe, http, sink, webhookEvents=["completed"])
    while apiframe.sim.jobs[job_id].status != "COMPLETED":
        await asyncio.sleep(0.01)
    assert sink.calls == []
    await apiframe.sim.settle()
    assert len(sink.calls) == 1


async def test_early_delivery_precedes_the_202(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink
) -> None:
    """With `early`, the terminal webhook has arrived by the time the submit is answered."""
    apiframe.sim.config.early = True
    response, job_id = await submit(apiframe, http, sink, webhookEvents=["completed"])
    assert response.status_code == 202
    assert [event["jobId"] for event in events(sink)] == [job_id]


@pytest.mark.parametrize(("fault", "verifies"), [("unsigned", None), ("wrong_signature", False)])
async def test_signature_faults(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink, fault: str, verifies: bool | None
) -> None:
    """Unsigned deliveries carry no signature; wrong ones carry one that does not verify."""
    setattr(apiframe.sim.config, fault, True)
    await submit(apiframe, http, sink, webhookEvents=["completed"])
    await apiframe.sim.settle()
    [(headers, body)] = sink.calls
    header = headers.get("x-webhook-signature")
    if verifies is None:
        assert header is None
    else:
        assert header is not None
        assert verify_signature(body, header, [API_KEY]) is None


@pytest.mark.parametrize(("shape", "expected"), [("string", str), ("empty", dict)])
async def test_result_shapes(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink, shape: str, expected: type
) -> None:
    """The webhook's result can be a bare URL or an empty list, while the job keeps its images."""
    apiframe.sim.config.webhook_result_shape = shape  # type: ignore[assignment]
    _, job_id = await submit(apiframe, http, sink, webhookEvents=["completed"])
    await apiframe.sim.settle()
    result = events(sink)[0]["result"]
    assert isinstance(result, expected)
    if shape == "string":
        assert result == apiframe.sim.jobs[job_id].image_urls[0]
    else:
        assert result == {"images": []}
    job = (await http.get(f"{apiframe.url}/v2/jobs/{job_id}")).json()
    assert job["result"]["images"] == apiframe.sim.jobs[job_id].image_urls


async def test_non_2xx_answers_are_retried_on_schedule(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink
) -> None:
    """A receiver answering 500 twice gets the same body a third time, then counts as delivered."""
    apiframe.sim.config.retry_schedule = (0.01, 0.01, 0.01)
    sink.statuses = [500, 503]
    _, job_id = await submit(apiframe, http, sink, webhookEvents=["completed"])
    await apiframe.sim.settle()
    assert len(sink.calls) == 3
    assert len(set(sink.bodies())) == 1
    attempts = [(d.attempt, d.status) for d in apiframe.sim.deliveries_for(job_id)]
    assert attempts == [(1, 500), (2, 503), (3, 200)]
    job = (await http.get(f"{apiframe.url}/v2/jobs/{job_id}")).json()
    assert job["webhookStatus"] == "delivered"


async def test_exhausted_retries_mark_the_webhook_failed(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink
) -> None:
    """When every attempt fails, the job's `webhookStatus` says so."""
    apiframe.sim.config.retry_schedule = (0.01,)
    sink.statuses = [500, 500]
    _, job_id = await submit(apiframe, http, sink, webhookEvents=["completed"])
    await apiframe.sim.settle()
    job = (await http.get(f"{apiframe.url}/v2/jobs/{job_id}")).json()
    assert job["webhookStatus"] == "failed"
    assert len(sink.calls) == 2


async def test_a_receiver_that_hangs_times_the_delivery_out(
    apiframe: Apiframe, http: httpx.AsyncClient
) -> None:
    """A delivery unanswered within `webhook_timeout_seconds` is recorded with no status."""
    hang = asyncio.Event()

    async def slow(request: Request) -> Response:
        await hang.wait()
        return Response()

    apiframe.sim.config.webhook_timeout_seconds = 0.05
    app = Starlette(routes=[Route("/hook", slow, methods=["POST"])])
    async with serving(app) as url:
        body = {
            "model": GROK,
            "prompt": "x",
            "webhookUrl": f"{url}/hook",
            "webhookEvents": ["completed"],
        }
        job_id = (await http.post(apiframe.url + GENERATE, json=body)).json()["jobId"]
        await apiframe.sim.settle()
        hang.set()
    [delivery] = apiframe.sim.deliveries_for(job_id)
    assert delivery.status is None
    assert apiframe.sim.jobs[job_id].webhook_status == "failed"
