"""A caller's share past its turn: its credits for the day (Apiframe's 402, with Apiframe's
fields, before anything is recorded) and the most jobs it may have waiting (a 429)."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from simulator.local_s3 import LocalS3
from tests.support.stack import CALLER_KEYS, Sink, Stack, stack_on
from worker.ledger import keys
from worker.ledger.admission import Admission
from worker.status import Status

SUBMIT = "/v2/images/generate"


@pytest.fixture
async def alpha_capped(redis_url: str, s3_server: LocalS3, sink: Sink) -> AsyncIterator[Stack]:
    """alpha may spend 20 credits a day; the operator has no cap."""
    async with stack_on(redis_url, s3_server, sink, caller_credits="alpha=20") as stack:
        yield stack


@pytest.fixture
async def held(redis_url: str, s3_server: LocalS3, sink: Sink) -> AsyncIterator[Stack]:
    """Nothing is sent to Apiframe; the operator may spend 30 credits a day, and have three
    jobs waiting."""
    async with stack_on(
        redis_url, s3_server, sink, dispatching=False, caller_credits="operator=30", waiting_max=3
    ) as stack:
        yield stack


async def credits_today(stack: Stack) -> dict[str, float]:
    today: dict[str, float] = (await stack.api.get("/stats")).json()["creditsToday"]
    return today


async def test_a_caller_past_its_credits_for_the_day_gets_apiframes_402(
    alpha_capped: Stack,
) -> None:
    """Each job holds what its model last cost (10 credits before any is seen) until it ends,
    then what Apiframe charged: alpha's third job is refused with Apiframe's 402 and fields,
    nothing recorded; once two have landed at 5 credits each, two more fit, and a fifth does
    not. The operator, uncapped, is never refused."""
    stack = alpha_capped
    stack.sim.config.credit_cost = 5
    async with httpx.AsyncClient(
        base_url=stack.receiver_url, headers={"X-API-Key": CALLER_KEYS["alpha"]}
    ) as alpha:

        async def submit(n: int) -> httpx.Response:
            body = {"prompt": f"sticker {n}", "model": "grok-imagine-image"}
            return await alpha.post(SUBMIT, json=body)

        assert [(await submit(n)).status_code for n in range(2)] == [202, 202]
        refused = await submit(2)
        assert refused.status_code == 402, refused.text
        assert refused.json() | {"error": ""} == {
            "error": "",
            "creditsRequired": 10,
            "creditsAvailable": 0,
        }
        assert "IMAGEDOCK_CALLER_CREDITS" in refused.json()["error"]
        assert (await stack.accept("the operator's"))["status"] == "QUEUED"
        await stack.run_worker()
        assert await credits_today(stack) == {"alpha": 10}
        listed = (await alpha.get("/v2/jobs")).json()["jobs"]
        assert {job["status"] for job in listed} == {"COMPLETED"}
        assert len(listed) == 2  # the refused job was never recorded

        assert [(await submit(n)).status_code for n in range(3, 5)] == [202, 202]
        refused = await submit(5)
        assert refused.status_code == 402, refused.text
        assert (refused.json()["creditsRequired"], refused.json()["creditsAvailable"]) == (5, 0)


async def test_a_job_that_never_runs_gives_its_credits_back(held: Stack) -> None:
    """A batch takes what the day's credits hold and refuses the rest, each with its own code;
    a key sent again holds nothing more; a cancelled job's credits are free again."""
    stack = held
    sent = [
        await stack.api.post(
            "/jobs", json={"prompt": "poster 0"}, headers={"Idempotency-Key": "poster-0"}
        )
        for _ in range(2)
    ]
    first = sent[0].json()
    assert sent[1].json()["ref"] == first["ref"]
    assert await credits_today(stack) == {"operator": 10}
    batch = {"jobs": [{"prompt": f"poster {n}"} for n in range(1, 4)]}
    outcomes = (await stack.api.post("/jobs/batch", json=batch)).json()["jobs"]
    # A batch's jobs are recorded several at once: which one the credits could not hold varies.
    [refused] = [outcome for outcome in outcomes if "status" not in outcome]
    assert [outcome.get("status") for outcome in outcomes].count("QUEUED") == 2
    assert (refused["code"], refused["details"]) == (
        402,
        {"creditsRequired": 10, "creditsAvailable": 0},
    )
    cancelled = await stack.api.delete(f"/jobs/{first['ref']}")
    assert cancelled.json()["status"] == "CANCELLED"
    assert await credits_today(stack) == {"operator": 20}
    assert (await stack.accept("poster 3"))["status"] == "QUEUED"


async def test_a_caller_with_the_most_jobs_waiting_gets_a_429(held: Stack) -> None:
    """Three jobs wait, the most a caller may have: a fourth, and a thousand more, are refused
    with a 429 and a Retry-After, and Redis keeps nothing of them; another caller's queue is
    its own."""
    stack = held
    for n in range(3):
        await stack.accept(f"banner {n}")
    refused = await stack.api.post(
        "/jobs", json={"prompt": "banner 3"}, headers={"Idempotency-Key": "banner-3"}
    )
    assert refused.status_code == 429, refused.text
    assert not await stack.redis.exists(keys.idempotency("submit:banner-3"))  # nothing kept
    keys_before = await stack.redis.dbsize()
    for first in range(0, 1000, 50):  # a careless thousand more, each with a key of its own
        answers = await asyncio.gather(
            *(
                stack.api.post(
                    "/jobs", json={"prompt": "more"}, headers={"Idempotency-Key": f"k{n}"}
                )
                for n in range(first, first + 50)
            )
        )
        assert {answer.status_code for answer in answers} == {429}
    assert await stack.redis.dbsize() == keys_before  # Redis holds nothing more for them
    assert "IMAGEDOCK_WAITING_MAX" in refused.json()["error"]
    assert int(refused.headers["Retry-After"]) > 0
    async with httpx.AsyncClient(
        base_url=stack.receiver_url, headers={"X-API-Key": CALLER_KEYS["beta"]}
    ) as beta:
        body = {"prompt": "beta's own", "model": "grok-imagine-image"}
        assert (await beta.post(SUBMIT, json=body)).status_code == 202
    assert len((await stack.api.get("/jobs")).json()["jobs"]) == 4


async def test_a_job_apiframe_finished_keeps_its_credits_whatever_its_landing(held: Stack) -> None:
    """Apiframe charged a job once it finished it: a landing that then fails refunds nothing;
    a job Apiframe failed refunds all it held."""
    ledger = held.deps.ledger
    admission = Admission("operator", "grok-imagine-image", 10, 30.0, 10.0)
    finished, refused = [
        (await ledger.create(prompt=f"p{n}", model="grok-imagine-image", admission=admission))[0]
        for n in range(2)
    ]
    await ledger.transition(finished.ref, Status.COMPLETED, "test")
    await ledger.transition(finished.ref, Status.FAILED, "test", error="landing failed")
    await ledger.transition(refused.ref, Status.FAILED, "test", error="content policy")
    assert await credits_today(held) == {"operator": 10}
