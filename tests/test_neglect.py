"""Jobs that would never end: each one reaches an end with its reason and a `job.failed`."""

from tests.support.stack import Stack
from tests.support.waiting import eventually
from worker.ledger.keys import POLL_SET, waiting
from worker.ledger.waiting import OPERATOR


async def test_a_cdn_slower_than_the_landing_timeout_fails_the_job(stack: Stack) -> None:
    """Each too-slow landing is a failed attempt the ledger counts; at the limit the job fails
    with the reason, instead of timing out silently for ever."""
    stack.settings.landing_timeout = 0.3
    stack.settings.landing_max_tries = 3
    stack.sim.config.image_bytes = 1_000_000
    stack.sim.config.cdn_chunk_delay = 0.1  # about 1.6 s for the image
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    job = await stack.job(job_id)
    assert job["status"] == "FAILED"
    assert job["error"] == "gave up after 3 tries: landing took over 0.3 s"
    events = await stack.log_events(job_id)
    assert events.count("landing.retry") == 2
    [event] = stack.delivered("job.failed")
    assert event["data"]["reason"] == job["error"]


async def test_failed_attempts_are_counted_across_requeues(stack: Stack) -> None:
    """The poller queueing a stuck landing again does not start its count afresh."""
    stack.settings.landing_timeout = 0.3
    stack.settings.landing_max_tries = 2
    stack.sim.config.image_bytes = 1_000_000
    stack.sim.config.cdn_chunk_delay = 0.1
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    record = await stack.ledger.by_job_id(job_id)
    assert record is not None
    failed = await stack.ledger.get(record.ref)
    assert failed is not None
    assert failed.landing_failures == 2
    assert (await stack.job(job_id))["status"] == "FAILED"


async def test_a_completed_job_not_landed_by_the_deadline_fails(stack: Stack) -> None:
    """COMPLETED at Apiframe but never landed: past the landing deadline the poller fails it."""
    stack.settings.landing_deadline = 0.1
    job_id = (await stack.submit())["jobId"]
    await stack.sim.settle()
    assert (await stack.job(job_id))["status"] == "COMPLETED"
    await stack.wait_until_due()
    await stack.poll()
    job = await stack.job(job_id)
    assert job["status"] == "FAILED"
    assert job["error"].startswith("not landed ")
    await stack.run_worker()
    [event] = stack.delivered("job.failed")
    assert event["data"]["jobId"] == job_id


async def test_a_job_apiframe_never_took_is_failed_at_the_submit_deadline(stack: Stack) -> None:
    """A job that waits through an outage past the submit deadline is taken out of the queue
    and failed by the poller, with the outage as its reason; it is never sent after that, and
    its Idempotency-Key names the failed job."""
    stack.settings.submit_deadline = 0.1
    stack.sim.fail_next(503, times=100, path="/v2/images/generate")
    accepted = await stack.api.post("/jobs", json={"prompt": "p"}, headers={"Idempotency-Key": "o"})
    assert accepted.status_code == 202
    ref = accepted.json()["ref"]

    async def refused() -> bool:
        return len(stack.sim.submissions()) >= 1

    await eventually(refused, "Apiframe's first 503")
    assert await stack.redis.zscore(POLL_SET, ref) is not None
    await stack.wait_until_due()
    await stack.poll()
    failed = await stack.ledger.get(ref)
    assert failed is not None
    assert failed.status == "FAILED"
    assert failed.error is not None
    assert failed.error.startswith("never submitted to Apiframe")
    assert "503" in failed.error
    assert not await stack.redis.zscore(waiting(OPERATOR), ref)
    again = await stack.api.post("/jobs", json={"prompt": "p"}, headers={"Idempotency-Key": "o"})
    assert (again.status_code, again.json()["status"]) == (202, "FAILED")
