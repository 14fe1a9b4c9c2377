"""A worker killed with work in hand: its claims lapse within `IMAGEDOCK_CLAIM` seconds (here
`CLAIM`), not arq's four minutes, and another worker finishes a delivery and a landing it held;
a submit it was sending is sent again within the same, and billed once."""

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.local_s3 import LocalS3
from simulator.serving import serving
from tests.support.processes import killable_worker
from tests.support.stack import Sink, Stack, dispatcher_of, stack_on
from tests.support.waiting import eventually
from worker.sinks.body import event_id

CLAIM = 5.0  # seconds, `IMAGEDOCK_CLAIM` for these tests (30 by default)
MARGIN = 20.0  # seconds past the claim for the next worker to pick the job up and finish it


@pytest.fixture
async def hanging_sink() -> AsyncIterator[Sink]:
    """An endpoint that holds its first call open, then answers every other one at once."""
    state = Sink(url="")
    released, held = asyncio.Event(), list[bytes]()

    async def record(request: Request) -> Response:
        body = await request.body()
        if not held:
            held.append(body)
            await released.wait()
        state.calls.append((dict(request.headers), body))  # recorded as it is answered
        state.answered.append(200)
        return Response(status_code=200)

    async with serving(Starlette(routes=[Route("/hook", record, methods=["POST"])])) as url:
        state.url = f"{url}/hook"
        yield state
        released.set()


async def claimed(stack: Stack, pattern: str) -> bool:
    return bool([key async for key in stack.redis.scan_iter(f"arq:in-progress:{pattern}")])


async def test_a_killed_workers_delivery_and_landing_are_finished_within_the_claim(
    redis_url: str, s3_server: LocalS3, hanging_sink: Sink
) -> None:
    """SIGKILL while a delivery waits on its endpoint and a landing downloads: the next worker
    delivers the event and lands the job, each once, before arq's own claim would have let it
    start."""
    async with stack_on(redis_url, s3_server, hanging_sink, claim=CLAIM) as stack:
        first = (await stack.submit("the first"))["jobId"]
        await stack.sim.settle()
        with killable_worker(stack) as doomed:
            await eventually(lambda: claimed(stack, "deliver:*"), "a delivery in hand")
            stack.sim.config.image_bytes = 2_000_000
            stack.sim.config.cdn_chunk_delay = 0.5  # a landing that takes its time
            second = (await stack.submit("the second"))["jobId"]
            await stack.sim.settle()
            await eventually(lambda: claimed(stack, f"land:{second}"), "a landing in hand")
            doomed.send_signal(signal.SIGKILL)
        stack.sim.config.cdn_chunk_delay = 0
        with killable_worker(stack):

            async def finished() -> bool:
                sent = {event["id"] for event in stack.delivered("job.landed")}
                return sent == {event_id(job, "job.landed") for job in (first, second)}

            await eventually(finished, "both jobs delivered", deadline=CLAIM + MARGIN)
        job = await stack.job(second)
        assert (job["status"], len(job["objects"])) == ("LANDED", 1)
        assert (await stack.log_events(second)).count("job.landed") == 1


async def test_a_killed_workers_submit_is_sent_again_and_billed_once(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> None:
    """SIGKILL while a submit waits on Apiframe's answer: within the lease another taker sends
    the job again with its Idempotency-Key, and Apiframe, which made the job, answers with it.
    One job, billed once, landed once; none lost."""
    async with stack_on(redis_url, s3_server, sink, dispatching=False, claim=CLAIM) as stack:
        stack.sim.config.response_delay_seconds = 3.0  # the answer is still on its way
        with killable_worker(stack) as doomed:
            ref = (await stack.accept("held up"))["ref"]

            async def at_apiframe() -> bool:
                return len(stack.sim.submissions()) == 1

            await eventually(at_apiframe, "the submit sent")
            doomed.send_signal(signal.SIGKILL)
        stack.sim.config.response_delay_seconds = 0
        async with dispatcher_of(stack.deps):
            job_id = (await stack.submitted(ref, within=CLAIM + MARGIN))["jobId"]
        sent = stack.sim.submissions()
        assert len(sent) == 2
        assert len({request.headers["idempotency-key"] for request in sent}) == 1
        assert list(stack.sim.jobs) == [job_id]
        await stack.run_worker()
        assert (await stack.job(ref))["status"] == "LANDED"
        assert (await stack.log_events(ref)).count("job.landed") == 1
