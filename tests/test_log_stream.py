"""The job log as a stream: Server-Sent Events on `GET /log`, and `imagedock tail -f`."""

import asyncio
import json
import sys
from typing import Any

import httpx

from tests.support.processes import env_of
from tests.support.stack import Stack

SSE = {"Accept": "text/event-stream"}


async def read_events(
    api: httpx.AsyncClient, until: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The stream's events up to and including the first entry named `until`."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with api.stream("GET", "/log", headers={**SSE, **(headers or {})}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
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
