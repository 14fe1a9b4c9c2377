"""The job log as a stream: Server-Sent Events on `GET /log`, and `imagedock tail -f`."""

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from receiver.live_log import PAGE, QUEUE, Chunk, LogFanout, id_of
from simulator.local_s3 import LocalS3
from tests.support.processes import env_of
from tests.support.stack import Sink, Stack, stack_on
from tests.support.webhooks import post_hook
from worker.deps import Deps
from worker.ledger import keys
from worker.ledger.log import queue_entry

SSE = {"Accept": "text/event-stream"}
CONNECTIONS = 16


async def read_events(
    api: httpx.AsyncClient,
    until: str,
    headers: dict[str, str] | None = None,
    opened: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """The stream's events up to and including the first entry named `until`; `opened` is
    called once the stream is answered."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with api.stream("GET", "/log", headers={**SSE, **(headers or {})}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        if opened is not None:
            opened()
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("data: "):
                current["entry"] = json.loads(line[6:])
            elif not line and "entry" in current:
                events.append(current)
                if current["entry"]["event"] == until:
                    return events
                current = {}
    return events


async def test_the_log_streams_every_entry_once_in_order(stack: Stack) -> None:
    """Entries made while a client listens reach it once each, in order, with their ids."""
    start = {"Last-Event-ID": "0-0"}  # from the beginning, so none is missed while connecting
    listening = asyncio.create_task(read_events(stack.api, until="job.landed", headers=start))
    await stack.submit()
    await stack.run_worker()
    events = await asyncio.wait_for(listening, 30)
    logged = await stack.ledger.history.after(count=1000)
    ids = [event["id"] for event in events]
    assert ids == [entry.id for entry in logged][: len(ids)]
    assert [event["entry"]["id"] for event in events] == ids


async def test_a_reconnect_resumes_after_the_last_event_id(stack: Stack) -> None:
    """With `Last-Event-ID`, the stream goes on from the entry after it: nothing lost, nothing
    repeated."""
    await stack.submit()
    await stack.run_worker()
    logged = await stack.ledger.history.after(count=1000)
    middle = logged[len(logged) // 2]
    events = await asyncio.wait_for(
        read_events(stack.api, until=logged[-1].event, headers={"Last-Event-ID": middle.id}), 30
    )
    assert [event["id"] for event in events][: len(logged) // 2] == [
        entry.id for entry in logged[len(logged) // 2 + 1 :]
    ][: len(logged) // 2]
    assert events[0]["id"] == logged[len(logged) // 2 + 1].id


async def test_a_bad_last_event_id_is_refused(stack: Stack) -> None:
    answer = await stack.api.get("/log", headers={**SSE, "Last-Event-ID": "../../etc"})
    assert answer.status_code == 400


async def test_tail_follows_the_log(stack: Stack) -> None:
    """`imagedock tail -f` shows the last entry, then every one made after it."""
    await stack.submit("the first")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "imagedock",
        "tail",
        "-f",
        "-n",
        "1",
        env=env_of(stack),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        await asyncio.wait_for(process.stdout.readline(), 30)  # the last entry: it is following
        job_id = (await stack.submit("the second"))["jobId"]
        seen = b""
        while b"job.submitted" not in seen:
            seen += await asyncio.wait_for(process.stdout.readline(), 30)
        assert job_id[:8].encode() in seen
    finally:
        process.kill()
        await process.wait()


async def connected_clients(stack: Stack) -> int:
    return int((await stack.redis.info("clients"))["connected_clients"])


async def test_three_hundred_streams_share_one_reader(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> None:
    """300 live streams hold no Redis connection each: with 16 connections a process, signed
    webhooks are accepted, the job lands, probes answer, every stream gets the job's entries in
    order, one stream more is refused with 503 and `Retry-After`, and no more connections are
    ever open than allowed. (How fast webhooks are answered meanwhile is in BENCHMARKS.md.)"""
    async with stack_on(redis_url, s3_server, sink, redis_max_connections=CONNECTIONS) as stack:
        streams = stack.settings.streams_max
        assert streams == 300
        before = await connected_clients(stack)
        opened = asyncio.Semaphore(0)
        limits = httpx.Limits(max_connections=streams + 10)
        async with httpx.AsyncClient(
            base_url=stack.receiver_url, headers=stack.api.headers, limits=limits, timeout=60
        ) as many:
            listening = [
                asyncio.create_task(read_events(many, "job.landed", opened=opened.release))
                for _ in range(streams)
            ]
            for _ in range(streams):
                await asyncio.wait_for(opened.acquire(), 60)
            refused = await many.get("/log", headers=SSE)
            assert (refused.status_code, refused.headers["retry-after"]) == (503, "5")
            answer = await stack.submit()
            job_id = answer["jobId"]
            for progress in range(1, 51):
                body = {"jobId": job_id, "status": "PROCESSING", "progress": progress}
                assert (await post_hook(stack, body, ref=answer["ref"])).status_code == 200
                assert (await many.get("/healthz")).status_code == 200
            await stack.run_worker()
            received = await asyncio.wait_for(asyncio.gather(*listening), 60)
            # The receiver's pool and the tests' own, each at most CONNECTIONS.
            assert await connected_clients(stack) - before <= 2 * CONNECTIONS
        logged = [entry.id for entry in await stack.ledger.history.after(count=1000)]
    for events in received:
        start = logged.index(events[0]["id"])
        assert [event["id"] for event in events] == logged[start : start + len(events)]
        assert events[-1]["entry"]["job_id"] == job_id


async def test_a_stream_that_falls_behind_is_dropped(deps: Deps) -> None:
    """A stream nobody reads is dropped once its queue is full: it ends (its client resumes
    with `Last-Event-ID`), and the one that keeps up gets everything."""
    fanout = LogFanout(deps.ledger, most=5)
    slow, steady = fanout.stream(None), fanout.stream(None)
    firsts = [asyncio.create_task(anext(stream)) for stream in (slow, steady)]
    while not all(first.done() for first in firsts):  # until both follow the log
        await write_entries(deps, 1, "test.warm_up")
        await asyncio.sleep(0.05)
    keeping_up = asyncio.create_task(read_until(steady, "test.last"))
    for _ in range(QUEUE // 100 + 1):  # more than the slow one's queue holds
        await write_entries(deps, 100, "test.bulk")
        await asyncio.sleep(0.01)
    await write_entries(deps, 1, "test.last")
    kept = [*entries_in(firsts[1].result()), *await asyncio.wait_for(keeping_up, 30)]
    assert [chunk async for chunk in slow] == []
    assert fanout.open == 1
    bulk = [entry for entry in kept if entry["event"] == "test.bulk"]
    assert len(bulk) == (QUEUE // 100 + 1) * 100
    await steady.aclose()
    await fanout.aclose()


def entries_in(chunk: bytes) -> list[dict[str, Any]]:
    """The job-log entries of a chunk of Server-Sent Events, with their ids."""
    found = []
    for event in chunk.decode().split("\r\n\r\n"):
        fields = dict(line.split(": ", 1) for line in event.splitlines() if ": " in line)
        if "data" in fields:
            found.append({"id": fields["id"], **json.loads(fields["data"])})
    return found


async def read_until(stream: AsyncIterator[bytes], event: str) -> list[dict[str, Any]]:
    found = []
    async for chunk in stream:
        found += entries_in(chunk)
        if any(entry["event"] == event for entry in found):
            return found
    raise AssertionError(f"the stream ended before {event}")


async def write_entries(deps: Deps, count: int, event: str) -> None:
    async with deps.redis.pipeline(transaction=False) as pipe:
        for n in range(count):
            queue_entry(pipe, None, None, "test", event, {"n": n})
        await pipe.execute()


async def test_an_unreadable_entry_stops_no_stream(deps: Deps) -> None:
    """An entry whose detail is not JSON reaches the stream, clipped, and the next ones follow."""
    fanout = LogFanout(deps.ledger, most=2)
    stream = fanout.stream(None)
    first = asyncio.create_task(anext(stream))
    while not first.done():
        await write_entries(deps, 1, "test.warm_up")
        await asyncio.sleep(0.05)
    await deps.redis.xadd(keys.GLOBAL_LOG, {"ts": "1", "event": "odd", "detail": "{not json"})
    await write_entries(deps, 1, "test.after")
    seen = await asyncio.wait_for(read_until(stream, "test.after"), 30)
    [odd] = [entry for entry in seen if entry["event"] == "odd"]
    assert odd["detail"] == {"unreadable": "{not json"}
    await stream.aclose()
    await fanout.aclose()


async def test_a_dropped_stream_stops_catching_up(deps: Deps) -> None:
    """A stream dropped while it still reads the past from Redis goes no further than the
    page in hand."""
    await write_entries(deps, 3 * PAGE, "test.past")
    fanout = LogFanout(deps.ledger, most=2)
    slow = fanout.stream("0-0")
    assert len(entries_in(await anext(slow))) == PAGE  # the first page is in hand
    while fanout.open:  # the reader fills the slow stream's queue with what comes now
        await write_entries(deps, 100, "test.now")
        await asyncio.sleep(0.01)
    rest = [entry async for chunk in slow for entry in entries_in(chunk)]
    assert len(rest) < PAGE
    await fanout.aclose()


async def test_a_chunk_partly_sent_in_the_catch_up_sends_only_the_rest(deps: Deps) -> None:
    """Where the reader's chunk overlaps what a stream sent while catching up, the stream is
    sent only the entries after its last one."""
    await write_entries(deps, 4, "test.overlap")
    entries = await deps.ledger.history.after("0-0", count=10)
    chunk = Chunk.of(entries)
    assert [e["id"] for e in entries_in(chunk.after(id_of(entries[1].id)))] == [
        entry.id for entry in entries[2:]
    ]
    assert chunk.after(id_of("0-0")) == chunk.body
