"""Apiframe answering 429 with Retry-After and 503 bursts, and its answers lost on the wire: the
submit waits them out without the caller, the poller and the landing keep their jobs, and a job
sent again with its Idempotency-Key bills once."""

import email.utils
import time
from collections.abc import AsyncIterator

import pytest

from simulator.local_s3 import LocalS3
from tests.support.joblog import entries
from tests.support.ledger import recent
from tests.support.proxy import Proxy, port_of
from tests.support.stack import Sink, Stack, fast_config, stack_on
from worker.ledger.keys import POLL_SET
from worker.sinks.body import event_id

SUBMIT = "/v2/images/generate"
HTTP_DATE = "an HTTP date 30 s ahead"


def billed(stack: Stack) -> int:
    """Credits Apiframe has taken, in jobs."""
    config = stack.sim.config
    return (fast_config().credits - config.credits) // config.credit_cost


def keys_sent(stack: Stack) -> set[str | None]:
    return {r.headers.get("idempotency-key") for r in stack.sim.submissions()}


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [
        (429, "0.2"),
        (429, HTTP_DATE),
        (503, "1"),  # Apiframe's queue or database outage, JSON
        (502, "1"),  # a proxy's HTML page
        (500, "1"),  # plain text
    ],
)
async def test_a_throttled_or_failing_submit_waits_and_bills_once(
    stack: Stack, status: int, retry_after: str
) -> None:
    """A burst of 429s (with Retry-After in seconds or as a date) or 5xx on submit never
    reaches the caller: its job, accepted at once (and again for a repeated Idempotency-Key),
    waits and is sent again with the same key, then lands once, billed once."""
    if retry_after == HTTP_DATE:
        retry_after = email.utils.formatdate(time.time() + 1, usegmt=True)
    stack.sim.fail_next(status, times=2, path=SUBMIT, retry_after=retry_after)
    key = {"Idempotency-Key": "throttled"}
    answers = [await stack.api.post("/jobs", json={"prompt": "p"}, headers=key) for _ in "ab"]
    assert [answer.status_code for answer in answers] == [202, 202], answers[0].text
    ref = answers[0].json()["ref"]
    assert answers[1].json()["ref"] == ref
    job_id = (await stack.submitted(ref, within=20))["jobId"]
    assert [r.ref for r in await recent(stack.ledger)] == [ref]
    assert (len(stack.sim.submissions()), len(keys_sent(stack))) == (3, 1)
    errors = [e for e in await entries(stack, ref) if e["event"] == "submit.error"]
    assert [str(status) in e["detail"]["error"] for e in errors] == [True, True]
    await stack.run_worker()
    assert (await stack.job(job_id))["status"] == "LANDED"
    assert (await stack.log_events(job_id)).count("job.landed") == 1
    assert (len(stack.sim.jobs), billed(stack)) == (1, 1)


@pytest.fixture
async def stack_apiframe(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> AsyncIterator[tuple[Stack, Proxy]]:
    """A stack that reaches Apiframe through a proxy that can lose its answers."""
    proxies: list[Proxy] = []

    async def via(url: str) -> str:
        proxies.append(Proxy(port_of(url)))
        await proxies[0].start()
        return proxies[0].url

    try:
        async with stack_on(redis_url, s3_server, sink, apiframe_via=via) as stack:
            yield stack, proxies[0]
    finally:
        for proxy in proxies:
            await proxy.close()


@pytest.mark.parametrize("lost", [1, 3])
async def test_a_submit_whose_answer_is_lost_bills_once(
    stack_apiframe: tuple[Stack, Proxy], lost: int
) -> None:
    """Apiframe takes the submit but its answer is lost on the way back: the client's own
    retries, under the same Idempotency-Key, absorb one loss; after three the job waits and
    is sent again with that key, and gets the job Apiframe made. The caller, answered at once,
    sees none of it. One job is billed, and it lands once."""
    stack, proxy = stack_apiframe
    proxy.lose = lambda data: data.startswith(f"POST {SUBMIT} ".encode())
    proxy.lose_answers = lost
    answer = await stack.api.post("/jobs", json={"prompt": "p"}, headers={"Idempotency-Key": "l"})
    assert answer.status_code == 202, answer.text
    job_id = (await stack.submitted(answer.json()["ref"], within=20))["jobId"]
    assert (len(stack.sim.submissions()), len(keys_sent(stack))) == (lost + 1, 1)
    assert list(stack.sim.jobs) == [job_id]
    await stack.run_worker()
    assert (await stack.job(job_id))["status"] == "LANDED"
    assert (await stack.log_events(job_id)).count("job.landed") == 1
    assert [e["id"] for e in stack.delivered()] == [event_id(job_id, "job.landed")]
    assert billed(stack) == 1


async def test_the_poller_keeps_a_job_through_apiframe_503s_and_429s(stack: Stack) -> None:
    """With the webhook lost, polls answered 503 and then 429 fail nothing and lose nothing:
    each is logged and the job checked again, and the next good answer lands it once."""
    stack.sim.config.drop_rate = 1.0
    answer = await stack.submit()
    await stack.sim.settle()
    await stack.wait_until_due()
    for status in (503, 429):
        stack.sim.fail_next(status, path="/v2/jobs/")
        assert await stack.poll() == 1
        assert (await stack.job(answer["jobId"]))["status"] == "QUEUED"
        assert await stack.redis.zscore(POLL_SET, answer["ref"]) is not None
        await stack.ledger.schedule_poll(answer["ref"], time.time())  # due again now
    errors = [e for e in await entries(stack, answer["jobId"]) if e["event"] == "poll.error"]
    assert [
        ("unavailable" in e["detail"]["error"], "Rate limit" in e["detail"]["error"])
        for e in errors
    ] == [(True, False), (False, True)]
    assert await stack.poll() == 1
    await stack.run_worker()
    events = await stack.log_events(answer["jobId"])
    assert (await stack.job(answer["jobId"]))["status"] == "LANDED"
    assert (events.count("webhook.missed"), events.count("job.landed")) == (1, 1)


async def test_a_poll_answered_429_waits_for_its_retry_after(stack: Stack) -> None:
    """A poll Apiframe answers 429 with Retry-After: 30 is not made again before those 30 s."""
    stack.sim.config.drop_rate = 1.0
    answer = await stack.submit()
    await stack.sim.settle()
    await stack.wait_until_due()
    stack.sim.fail_next(429, path="/v2/jobs/", retry_after="30")
    throttled_at = time.time()
    assert await stack.poll() == 1
    due = await stack.redis.zscore(POLL_SET, answer["ref"])
    assert due is not None
    assert due >= throttled_at + 30


async def test_a_landing_throttled_by_apiframe_waits_for_its_retry_after(stack: Stack) -> None:
    """The confirmation an unsigned webhook asks for, answered 429 with Retry-After: 2, is
    retried after those 2 s, not the landing's shorter backoff, then lands once."""
    stack.sim.config.unsigned = True
    job_id = (await stack.submit())["jobId"]
    stack.sim.fail_next(429, path="/v2/jobs/", retry_after="2")
    await stack.run_worker()
    [retry] = [e for e in await entries(stack, job_id) if e["event"] == "landing.retry"]
    assert retry["detail"]["retry_in"] == 2.0
    assert "Rate limit" in retry["detail"]["reason"]
    assert (await stack.job(job_id))["status"] == "LANDED"
    assert (await stack.log_events(job_id)).count("job.landed") == 1
