"""Downstream events: signed, retried on schedule, dead-lettered, redriven, streamed once."""

import asyncio
import json

import pytest
from standardwebhooks import Webhook

from tests.support.stack import EVENT_SECRET, Stack
from worker.ledger import keys
from worker.ledger.keys import EVENTS
from worker.sinks.body import event_id
from worker.sinks.webhook import endpoint_name


async def ref_of(stack: Stack, job_id: str) -> str:
    record = await stack.ledger.by_job_id(job_id)
    assert record is not None
    return record.ref


async def test_job_landed_event_carries_the_objects(stack: Stack) -> None:
    """A landed job sends one `job.landed` with its images, signed per Standard Webhooks."""
    job_id = (await stack.submit(metadata={"order": "7"}))["jobId"]
    await stack.run_worker()
    [event] = stack.delivered()
    assert event["type"] == "job.landed"
    assert event["id"] == event["headers"]["webhook-id"] == event_id(job_id, "job.landed")
    data = event["data"]
    assert (data["jobId"], data["status"], data["metadata"]) == (job_id, "LANDED", {"order": "7"})
    job = await stack.job(job_id)
    assert data["objects"] == job["objects"]
    assert data["images"] == data["objects"]  # an image job's files, as they were always named
    Webhook(EVENT_SECRET).verify(event["body"], event["headers"])


async def test_job_failed_event_has_the_reason(stack: Stack) -> None:
    """A failed job sends `job.failed` with the reason and no images."""
    stack.sim.config.failure_rate = 1.0
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    [event] = stack.delivered()
    assert event["type"] == "job.failed"
    assert event["data"]["reason"] == stack.sim.config.failure_message
    assert event["data"]["images"] == []
    assert event["data"]["jobId"] == job_id


async def test_three_500s_then_delivered_with_one_event_id(stack: Stack) -> None:
    """An endpoint answering 500 three times gets the same event again until it takes it."""
    stack.events.statuses = [500, 500, 500]
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    assert stack.events.answered == [500, 500, 500, 200]
    ids = {headers["webhook-id"] for headers, _ in stack.events.calls}
    assert ids == {event_id(job_id, "job.landed")}
    [event] = stack.delivered()
    Webhook(EVENT_SECRET).verify(event["body"], event["headers"])
    log = await stack.log_events(job_id)
    assert (log.count("event.retry"), log.count("event.delivered")) == (3, 1)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(stack: Stack, status: int) -> None:
    """A 429 or 503 with `Retry-After` is retried after that wait, not the schedule's."""
    stack.events.statuses = [status]
    stack.events.headers = [{"Retry-After": "1"}]  # the schedule would wait 0.01 s
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    assert stack.events.answered == [status, 200]
    entries = await stack.ledger.history.job(await ref_of(stack, job_id))
    [retry] = [entry for entry in entries if entry.event == "event.retry"]
    assert retry.detail["retry_in"] == 1.0


async def test_an_owed_event_published_twice_at_once_is_streamed_once(stack: Stack) -> None:
    """Two publishers racing over the same owed event: it is streamed once."""
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    record = await stack.ledger.by_job_id(job_id)
    assert record is not None
    before = await stack.redis.xlen(EVENTS)
    await stack.redis.delete(keys.event(event_id(job_id, "job.landed")))  # owed again
    await asyncio.gather(
        *(stack.deps.events.publish(record, "job.landed", "test") for _ in range(2))
    )
    assert await stack.redis.xlen(EVENTS) == before + 1
    log = await stack.log_events(job_id)
    assert log.count("event.published") == 2  # the first landing's, and one of the racers'


async def test_dead_letters_and_redrive(stack: Stack) -> None:
    """An endpoint that never recovers leaves a dead letter; after it is fixed, a redrive
    delivers the same event."""
    stack.events.statuses = [503] * 5
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    assert stack.delivered() == []
    [letter] = (await stack.api.get("/events/dead")).json()["deadLetters"]
    assert letter["eventId"] == event_id(job_id, "job.landed")
    sink = endpoint_name(stack.events.url)
    assert (letter["lastStatus"], letter["attempts"], letter["sink"]) == (503, 5, sink)
    assert stack.events.url not in json.dumps(letter)
    metrics = (await stack.api.get("/metrics")).text
    assert "imagedock_events_dead_letters 1.0" in metrics

    redriven = await stack.api.post("/events/redrive")
    assert redriven.json() == {"redriven": 1}
    await stack.run_worker()
    [event] = stack.delivered()
    assert event["id"] == letter["eventId"]
    assert (await stack.api.get("/events/dead")).json()["deadLetters"] == []


async def test_events_are_streamed_once_for_consumer_groups(stack: Stack) -> None:
    """Each event is one entry in the Redis Stream, readable through a consumer group."""
    stack.sim.config.duplicates = 3
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    await stack.redis.xgroup_create(EVENTS, "pipeline", id="0")
    [(_, entries)] = await stack.redis.xreadgroup("pipeline", "c1", {EVENTS: ">"}, count=10)
    assert len(entries) == 1
    _, fields = entries[0]
    payload = json.loads(fields[b"payload"])
    assert (fields[b"type"], payload["data"]["jobId"]) == (b"job.landed", job_id)


async def test_an_events_payload_is_stored_once(stack: Stack) -> None:
    """The payload is in the stream alone: the event's key keeps a stub without the prompt or
    metadata, and what the endpoint is sent, first and again after a replay, is the stream's
    payload byte for byte."""
    prompt = "a lighthouse " * 100
    job_id = (await stack.submit(prompt, metadata={"sku": "x" * 500}))["jobId"]
    await stack.run_worker()
    [(_, fields)] = await stack.redis.xrange(EVENTS)
    identifier = event_id(job_id, "job.landed")
    stub = await stack.redis.get(keys.event(identifier))
    assert len(stub) < 300
    assert b"lighthouse" not in stub
    assert (await stack.api.post(f"/jobs/{job_id}/replay")).status_code == 202
    await stack.run_worker()
    sent = [event["body"] for event in stack.delivered()]
    assert sent == [fields[b"payload"], fields[b"payload"]]
