"""Sinks: every kind gets the same schedule, attempts and dead letters, keyed by its own name, and
no log line, job-log entry or dead letter names an endpoint by more than its origin."""

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from simulator.local_s3 import LocalS3
from simulator.serving import serving
from tests.support.stack import EVENT_SECRET, Sink, Stack, stack_on
from worker.deps import Deps
from worker.ledger import keys
from worker.ledger.records import JobRecord
from worker.runtime.tasks import build_worker
from worker.sinks.base import EXCERPT, Sent
from worker.sinks.body import event_id
from worker.sinks.webhook import WebhookSink

SECRET_PATH, SECRET_QUERY = "s3cr3t-path-0123456789", "s3cr3t-query-9876543210"
CHUNK, MIB = 64 * 1024, 1024 * 1024


@dataclass
class MemorySink:
    """A sink kept in a list, refusing as many attempts as `refusals` says."""

    name: str = "memory"
    blocked_by: str | None = None
    refusals: int = 0
    received: list[dict[str, object]] = field(default_factory=list)

    def serves(self, record: JobRecord | None, event_type: str) -> bool:
        return True

    async def send(self, event_id: str, body: str, record: JobRecord | None) -> Sent:
        if self.refusals:
            self.refusals -= 1
            return Sent(False, excerpt="memory is full")
        self.received.append(json.loads(body))
        return Sent(True)


async def run_worker(deps: Deps) -> None:
    """A burst worker with `deps`, until its queue is empty."""
    worker = build_worker(deps, burst=True, handle_signals=False, poll_delay=0.01)
    try:
        await worker.main()
    finally:
        await worker.release()


async def land_one(stack: Stack, deps: Deps) -> str:
    """Submit a job and land it with `deps`, its events delivered."""
    job_id: str = (await stack.submit())["jobId"]
    await stack.sim.settle()
    await run_worker(deps)
    return job_id


async def test_an_event_reaches_a_second_kind_of_sink_too(stack: Stack) -> None:
    """A sink added beside the webhook endpoint gets the same event, once, with the same id."""
    memory = MemorySink()
    job_id = await land_one(stack, dataclasses.replace(stack.deps, more_sinks=(memory,)))
    [sent] = stack.delivered("job.landed")
    [kept] = memory.received
    assert kept["id"] == sent["id"] == event_id(job_id, "job.landed")
    assert kept["type"] == "job.landed"


async def test_each_sink_has_its_own_attempts_and_dead_letter(stack: Stack) -> None:
    """A sink that refuses every attempt is dead-lettered under its own name while the webhook
    endpoint, delivered at its first attempt, is not; a redrive reaches the sink that failed."""
    memory = MemorySink(refusals=len(stack.settings.event_retry_schedule))
    deps = dataclasses.replace(stack.deps, more_sinks=(memory,))
    job_id = await land_one(stack, deps)
    identifier = event_id(job_id, "job.landed")
    assert len(stack.delivered("job.landed")) == 1
    assert memory.received == []
    [letter] = (await stack.api.get("/events/dead")).json()["deadLetters"]
    assert (letter["eventId"], letter["sink"], letter["lastBody"]) == (
        identifier,
        "memory",
        "memory is full",
    )
    assert letter["attempts"] == len(stack.settings.event_retry_schedule)
    http = stack.deps.sinks[0].name
    assert int(await stack.redis.get(keys.attempts(identifier, http))) == 1

    assert await deps.events.redrive() == 1
    await run_worker(deps)
    assert [kept["id"] for kept in memory.received] == [identifier]
    assert len(stack.delivered("job.landed")) == 1  # the endpoint that took it is not sent again


@pytest.fixture
async def secret_sink() -> AsyncIterator[Sink]:
    """An endpoint whose URL carries a credential in its path and its query, as a chat or
    automation hook's does; it refuses every call until told otherwise."""
    state = Sink(url="", statuses=[503] * 5)

    async def record(request: Request) -> Response:
        state.calls.append((dict(request.headers), await request.body()))
        status = state.statuses.pop(0) if state.statuses else 200
        state.answered.append(status)
        return Response(status_code=status)

    app = Starlette(routes=[Route("/hooks/{token}", record, methods=["POST"])])
    async with serving(app) as url:
        state.url = f"{url}/hooks/{SECRET_PATH}?token={SECRET_QUERY}"
        yield state


async def test_no_line_names_an_endpoint_by_its_path_or_query(
    redis_url: str, s3_server: LocalS3, secret_sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    """Retries, the dead letter, its redrive and the delivery: every structlog line, every stdlib
    record (arq's included), every job-log entry and the dead-letter answer name the endpoint by
    origin and digest, never by its path or query."""
    caplog.set_level(logging.DEBUG)
    async with stack_on(redis_url, s3_server, secret_sink) as stack:
        with capture_logs() as logs:
            await stack.submit()
            await stack.run_worker()
            dead = (await stack.api.get("/events/dead")).text
            assert (await stack.api.post("/events/redrive")).json() == {"redriven": 1}
            await stack.run_worker()
        entries = await stack.ledger.history.after(count=1000)
    assert len(stack.delivered("job.landed")) == 1
    events = [line["event"] for line in logs]
    assert {"event.retry", "event.dead", "event.redriven", "event.delivered"} <= set(events)
    # httpx logs each request's URL at INFO, which imagedock's logging turns off; uvicorn's lines
    # here are the test endpoint's own server.
    foreign = ("httpx", "httpcore", "uvicorn")
    records = [r.getMessage() for r in caplog.records if not r.name.startswith(foreign)]
    assert any(r.name.startswith("arq") for r in caplog.records)
    written = [
        json.dumps(logs, default=str),
        *records,
        json.dumps([entry.public() for entry in entries]),
        dead,
    ]
    for text in written:
        assert SECRET_PATH not in text
        assert SECRET_QUERY not in text
    assert any(line.get("sink", "").startswith("http://127.0.0.1#") for line in logs)


async def answer_with(body: StreamingResponse) -> tuple[Sent, WebhookSink]:
    """One attempt of a webhook sink (a half-second deadline) at an endpoint answering `body`."""
    app = Starlette(routes=[Route("/hook", lambda request: body, methods=["POST"])])
    async with serving(app) as url, httpx.AsyncClient() as http:
        sink = WebhookSink(f"{url}/hook", http, Webhook(EVENT_SECRET), deadline=0.5)
        return await sink.send("evt_test", "{}", None), sink


async def test_a_huge_answer_costs_one_excerpt() -> None:
    """An endpoint answering 500 with 200 MiB is read for its first bytes only: the server,
    writing only as fast as the sink reads, gets no further than the sockets' buffers."""
    total, written = 200 * MIB, 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n" % total)
        with contextlib.suppress(ConnectionError):
            while written < total:
                writer.write(b"x" * CHUNK)
                await writer.drain()  # waits while the reader does not read
                written += CHUNK
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, httpx.AsyncClient() as http:
        sink = WebhookSink(f"http://127.0.0.1:{port}/hook", http, Webhook(EVENT_SECRET))
        sent = await sink.send("evt_test", "{}", None)
    assert (sent.ok, sent.status, sent.excerpt) == (False, 500, "x" * EXCERPT)
    assert written < 64 * MIB


async def test_an_answer_that_never_ends_is_cut_at_the_deadline() -> None:
    """An endpoint dripping its answer a byte at a time ends the attempt at the deadline."""

    async def drip() -> AsyncIterator[bytes]:
        for _ in range(6000):
            yield b"x"
            await asyncio.sleep(0.1)

    sent, sink = await answer_with(StreamingResponse(drip(), status_code=500))
    assert sent.ok is False
    assert sent.excerpt == f"no whole answer from {sink.name} in 0.5 s"
