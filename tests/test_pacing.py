"""Accept, then submit: every job is answered at once and sent to Apiframe from the submit
queue, within Apiframe's limits, fairly between callers, through 429s and an empty balance."""

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from simulator.config import Fault
from simulator.local_s3 import LocalS3
from tests.support.stack import CALLER_KEYS, Sink, Stack, dispatcher_of, stack_on
from tests.support.waiting import eventually
from worker.ledger.keys import PACE, WAITING_CALLERS
from worker.status import Status

SUBMIT = "/v2/images/generate"
# The proof at full size, `IMAGEDOCK_PROOF=full scripts/test tests/test_pacing.py`:
# a burst of 500 and a minute of 402s. CI runs the same tests smaller, for its time.
FULL = os.environ.get("IMAGEDOCK_PROOF") == "full"
BURST = 500 if FULL else 60
NO_CREDITS_FOR = 60.0 if FULL else 0.6  # seconds Apiframe answers 402


@pytest.fixture
async def paced(redis_url: str, s3_server: LocalS3, sink: Sink) -> AsyncIterator[Stack]:
    """A stack whose dispatcher the test starts (`dispatcher_of`), at 10 submits a second and
    20 jobs in flight."""
    async with stack_on(
        redis_url,
        s3_server,
        sink,
        dispatching=False,
        submit_rate=10,
        submit_concurrency=20,
        credits_recheck=0.2,
    ) as stack:
        yield stack


async def statuses(stack: Stack, refs: list[str]) -> list[dict[str, Any]]:
    return [await stack.job(ref) for ref in refs]


async def all_submitted(stack: Stack, refs: list[str]) -> bool:
    return all(job["jobId"] for job in await statuses(stack, refs))


async def test_a_burst_is_answered_at_once_and_sent_within_apiframes_limits(
    paced: Stack,
) -> None:
    """`BURST` jobs at once, against an Apiframe that allows 10 submits a second and 20 jobs in
    flight: each is answered 202 QUEUED with no Apiframe id, none is sent past a limit (the
    simulator's own count of throttled submits is 0), and each becomes one Apiframe job."""
    stack = paced
    stack.sim.config.submit_rate, stack.sim.config.max_in_flight = 10, 20
    stack.sim.config.processing_seconds = 3.0  # the rate binds first, then jobs in flight
    answers: list[httpx.Response] = []
    for first in range(0, BURST, 50):  # 50 at once: as many as the test's client has ready
        answers += await asyncio.gather(
            *(
                stack.api.post(
                    "/jobs", json={"prompt": f"kite {n}"}, headers={"Idempotency-Key": str(n)}
                )
                for n in range(first, min(first + 50, BURST))
            )
        )
    assert {answer.status_code for answer in answers} == {202}
    assert {(a.json()["status"], a.json()["jobId"]) for a in answers} == {("QUEUED", None)}
    assert stack.sim.submissions() == []  # nothing waits on Apiframe to answer the caller
    refs = [answer.json()["ref"] for answer in answers]
    async with dispatcher_of(stack.deps):
        await eventually(lambda: all_submitted(stack, refs), "every job submitted", BURST / 5 + 30)
    assert stack.sim.limits.throttled == 0
    assert len(stack.sim.jobs) == BURST
    assert len({job["jobId"] for job in await statuses(stack, refs)}) == BURST
    await stack.run_worker()
    assert {job["status"] for job in await statuses(stack, refs)} == {"LANDED"}


async def test_one_callers_burst_does_not_hold_back_anothers(paced: Stack) -> None:
    """The operator queues 40 jobs, then a `/v2/` caller 5: callers are served in turn, so the
    caller's five are among the first ten Apiframe receives. Inside the operator's share, a
    `high` job queued last goes before its `normal` ones."""
    stack = paced
    bulk = [(await stack.accept(f"catalogue {n}"))["ref"] for n in range(40)]
    urgent = (await stack.accept("urgent", priority="high"))["ref"]
    async with httpx.AsyncClient(
        base_url=stack.receiver_url, headers={"X-API-Key": CALLER_KEYS["alpha"]}
    ) as alpha:
        interactive = [
            (
                await alpha.post(
                    "/v2/images/generate",
                    json={"prompt": f"interactive {n}", "model": "grok-imagine-image"},
                )
            ).json()["jobId"]
            for n in range(5)
        ]
    async with dispatcher_of(stack.deps):
        await eventually(lambda: all_submitted(stack, [*bulk, urgent]), "every job submitted", 30)
    sent = [job.prompt for job in sorted(stack.sim.jobs.values(), key=lambda j: j.created_at)]
    first_ten = sent[:10]
    assert sorted(p for p in first_ten if p.startswith("interactive")) == [
        f"interactive {n}" for n in range(5)
    ], first_ten
    assert sent[0] == "urgent" or sent[1] == "urgent", first_ten
    assert len(interactive) == 5


async def test_ten_jobs_after_a_burst_of_400_land_before_its_last_hundred(paced: Stack) -> None:
    """The operator queues 400 jobs in one batch, then alpha 10, against an Apiframe that
    allows 10 submits a second and 20 jobs in flight: once alpha's ten are at Apiframe, more
    than a hundred of the 400 have not even been sent, and submitting stops there; what was
    sent lands, alpha's ten with it."""
    stack = paced
    stack.sim.config.submit_rate, stack.sim.config.max_in_flight = 10, 20
    for first in (0, 200):  # a batch takes at most 1,000 jobs; two keep each request short
        batch = {"jobs": [{"prompt": f"catalogue {n}"} for n in range(first, first + 200)]}
        assert (await stack.api.post("/jobs/batch", json=batch)).json()["accepted"] == 200
    async with httpx.AsyncClient(
        base_url=stack.receiver_url, headers={"X-API-Key": CALLER_KEYS["alpha"]}
    ) as alpha:
        body = {"prompt": "interactive", "model": "grok-imagine-image"}
        ten = [(await alpha.post(SUBMIT, json=body)).json()["jobId"] for _ in range(10)]
        refs = [uuid.UUID(job_id).hex for job_id in ten]
        async with dispatcher_of(stack.deps):
            await eventually(lambda: all_submitted(stack, refs), "alpha's ten submitted", 30)
        waiting = (await stack.api.get("/stats")).json()["waitingByCaller"]
        await stack.sim.settle()
        await stack.run_worker(settle=False)
        jobs = [(await alpha.get(f"/v2/jobs/{job_id}")).json() for job_id in ten]
    assert {job["status"] for job in jobs} == {"COMPLETED"}  # landed, as `/v2/` shows it
    assert waiting["operator"] > 100, waiting
    assert stack.sim.limits.throttled == 0


async def test_an_empty_balance_pauses_submitting_and_fails_nothing(paced: Stack) -> None:
    """Apiframe answers 402 until credits come back: jobs wait (the pace says why), none
    fails, and once the balance recovers every one is submitted, once."""
    stack = paced
    stack.sim.config.credits = 0
    refs = [(await stack.accept(f"poster {n}"))["ref"] for n in range(3)]
    async with dispatcher_of(stack.deps):

        async def paused() -> bool:
            stats = (await stack.api.get("/stats")).json()
            return "402" in stats["submitPace"]

        await eventually(paused, "the pace to say Apiframe answered 402", 10)
        tried, read = len(stack.sim.submissions()), balance_reads(stack)
        await asyncio.sleep(NO_CREDITS_FOR)  # rechecks of the balance, each still short
        assert len(stack.sim.submissions()) == tried  # no job is sent to learn the balance
        assert balance_reads(stack) >= read + 2
        jobs = await statuses(stack, refs)
        assert {(job["status"], job["jobId"]) for job in jobs} == {("QUEUED", None)}
        assert (await stack.api.get("/stats")).json()["waiting"] == 3
        stack.sim.config.credits = 1_000
        await eventually(lambda: all_submitted(stack, refs), "every job submitted", 10)
    assert len(stack.sim.jobs) == 3
    await stack.run_worker()
    assert {job["status"] for job in await statuses(stack, refs)} == {"LANDED"}


def balance_reads(stack: Stack) -> int:
    return sum(1 for request in stack.sim.received if request.path == "/v2/me")


async def test_429s_and_503s_delay_jobs_and_never_reach_the_caller(paced: Stack) -> None:
    """Apiframe throttles, then is unavailable: the jobs wait and go, each billed once, and
    the rate in force is halved by the 429 before it climbs back."""
    stack = paced
    stack.sim.config.faults = [
        Fault(429, times=2, path=SUBMIT, retry_after="0.1"),
        Fault(503, times=2, path=SUBMIT),
    ]
    refs = [(await stack.accept(f"sign {n}"))["ref"] for n in range(4)]
    async with dispatcher_of(stack.deps):
        await eventually(lambda: all_submitted(stack, refs), "every job submitted", 15)
    assert len(stack.sim.jobs) == 4
    assert len(stack.sim.submissions()) == 8
    errors = [
        entry["event"]
        for ref in refs
        for entry in (await stack.api.get(f"/jobs/{ref}/log")).json()["entries"]
    ]
    assert errors.count("submit.error") == 4
    rate = await stack.redis.hget(PACE, "rate")  # type: ignore[misc]
    assert rate is None or float(rate) < 10  # halved, and climbing back


async def test_a_request_apiframe_refuses_fails_its_job_with_the_reason(paced: Stack) -> None:
    """A 400 from Apiframe is the request's own fault: that job fails, saying why, and the
    next one goes."""
    stack = paced
    stack.sim.config.faults = [Fault(400, times=1, path=SUBMIT)]
    refused = (await stack.accept("first"))["ref"]
    fine = (await stack.accept("second"))["ref"]
    async with dispatcher_of(stack.deps):
        await eventually(lambda: all_submitted(stack, [fine]), "the second submitted", 10)
        await eventually(lambda: _status_is(stack, refused, "FAILED"), "the first failed", 10)
    job = await stack.job(refused)
    assert "400" in job["error"]
    await stack.run_worker()
    failed = stack.delivered("job.failed")
    assert [event["data"]["ref"] for event in failed] == [refused]


async def _status_is(stack: Stack, ref: str, status: str) -> bool:
    return bool((await stack.job(ref))["status"] == status)


async def test_a_waiting_job_can_be_cancelled_before_it_costs(paced: Stack) -> None:
    """`DELETE /jobs/{id}` ends a job still waiting as CANCELLED with a `job.failed` event,
    and Apiframe never hears of it; a job Apiframe has is a 409, an unknown one a 404."""
    stack = paced
    ref = (await stack.accept("never mind"))["ref"]
    kept = (await stack.accept("keep this"))["ref"]
    cancelled = await stack.api.delete(f"/jobs/{ref}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == Status.CANCELLED
    again = await stack.api.delete(f"/jobs/{ref}")
    assert again.status_code == 409
    assert "CANCELLED" in again.json()["error"]
    async with dispatcher_of(stack.deps):
        await eventually(lambda: all_submitted(stack, [kept]), "the other submitted", 10)
    assert [job.prompt for job in stack.sim.jobs.values()] == ["keep this"]
    at_apiframe = await stack.api.delete(f"/jobs/{kept}")
    assert at_apiframe.status_code == 409
    assert "no cancel" in at_apiframe.json()["error"]
    assert (await stack.api.delete("/jobs/" + "0" * 32)).status_code == 404
    await stack.run_worker()
    [failed] = stack.delivered("job.failed")
    assert failed["data"]["ref"] == ref
    assert "cancelled before" in failed["data"]["reason"]


async def test_an_unknown_priority_is_refused_naming_the_field(paced: Stack) -> None:
    response = await paced.api.post("/jobs", json={"prompt": "x", "priority": "urgent"})
    assert response.status_code == 400
    assert "priority" in response.json()["details"]
    assert await paced.redis.llen(WAITING_CALLERS) == 0  # type: ignore[misc]


async def test_a_caller_at_its_own_cap_lets_the_others_go(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> None:
    """The operator may have two jobs in flight (`IMAGEDOCK_CALLER_IN_FLIGHT`): its other jobs
    wait while a `/v2/` caller's go, and go once the first two finish."""
    async with stack_on(
        redis_url, s3_server, sink, dispatching=False, caller_in_flight="operator=2"
    ) as stack:
        stack.sim.config.processing_seconds = 2.0
        bulk = [(await stack.accept(f"bulk {n}"))["ref"] for n in range(6)]
        async with httpx.AsyncClient(
            base_url=stack.receiver_url, headers={"X-API-Key": CALLER_KEYS["alpha"]}
        ) as alpha:
            body = {"prompt": "interactive", "model": "grok-imagine-image"}
            mine = [(await alpha.post("/v2/images/generate", json=body)).json() for _ in "abc"]
        refs = [job["jobId"].replace("-", "") for job in mine]
        async with dispatcher_of(stack.deps):
            await eventually(lambda: all_submitted(stack, refs), "the caller's jobs sent", 10)
            sent = [job["jobId"] is not None for job in await statuses(stack, bulk)]
            assert sent == [True, True, False, False, False, False]
            assert (await stack.api.get("/stats")).json()["waitingByCaller"] == {"operator": 4}
            await eventually(lambda: all_submitted(stack, bulk), "the rest, in turn", 20)


async def test_a_job_given_back_frees_its_callers_place(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> None:
    """A caller allowed one job in flight, whose job Apiframe answers 503: the job, given
    back, takes that one place again and goes."""
    async with stack_on(redis_url, s3_server, sink, caller_in_flight="operator=1") as stack:
        stack.sim.fail_next(503, path=SUBMIT)
        ref = (await stack.accept("once refused"))["ref"]
        assert (await stack.submitted(ref))["jobId"] is not None
        assert [r.status for r in stack.sim.submissions()] == [503, 202]


async def test_a_caller_at_its_own_rate_lets_the_others_go(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> None:
    """The operator may send one job a second (`IMAGEDOCK_CALLER_RATE`): after its first, a
    `/v2/` caller's three queued after it go before the operator's second."""
    async with stack_on(
        redis_url, s3_server, sink, dispatching=False, caller_rate="operator=1"
    ) as stack:
        bulk = [(await stack.accept(f"bulk {n}"))["ref"] for n in range(3)]
        async with httpx.AsyncClient(
            base_url=stack.receiver_url, headers={"X-API-Key": CALLER_KEYS["alpha"]}
        ) as alpha:
            body = {"prompt": "interactive", "model": "grok-imagine-image"}
            for _ in "abc":
                await alpha.post("/v2/images/generate", json=body)
        async with dispatcher_of(stack.deps):
            await eventually(lambda: all_submitted(stack, bulk), "every job sent", 10)
        sent = [job.prompt for job in sorted(stack.sim.jobs.values(), key=lambda j: j.created_at)]
        assert sent[:4] == ["bulk 0", "interactive", "interactive", "interactive"], sent


async def test_a_recovered_balance_ends_only_the_402s_own_pause(paced: Stack) -> None:
    """A 402 pauses submitting until the balance recovers; a 429's longer pause, set since,
    outlasts that recovery, and says why."""
    queue = paced.deps.submit_queue
    await queue.short_of_credits(10, time.time() + 1, "Apiframe answered 402")
    await queue.give_back("0" * 32, pause=60, why="Apiframe answered 429")
    await queue.resume()
    pace = await queue.pace()
    assert (pace.paused_for > 30, pace.why) == (True, "Apiframe answered 429")
    assert await queue.credits_needed() is None
