"""Never losing a job: polling when webhooks never come, deadlines, crashes, tracking, replay."""

import asyncio
import signal
import uuid

from tests.support.ledger import counters
from tests.support.processes import killable_worker
from tests.support.stack import API_KEY, BUCKET, Stack
from worker.apiframe import ApiframeClient, ApiframeRequest
from worker.ledger.keys import POLL_SET
from worker.polling import follow
from worker.runtime.tasks import build_poll_worker
from worker.sinks.body import event_id
from worker.status import Status


async def test_all_webhooks_dropped_every_job_lands_through_polling(stack: Stack) -> None:
    """With every webhook lost, polling lands each job and counts each as missed."""
    stack.sim.config.drop_rate = 1.0
    job_ids = [(await stack.submit(f"prompt {n}"))["jobId"] for n in range(3)]
    await stack.sim.settle()
    await stack.wait_until_due()
    assert await stack.poll() == 3
    await stack.run_worker()
    for job_id in job_ids:
        job = await stack.job(job_id)
        assert (job["status"], job["lastWebhookAt"]) == ("LANDED", None)
        assert len(stack.keys(job_id)) == 2
        assert "webhook.missed" in await stack.log_events(job_id)
    assert (await stack.api.get("/stats")).json()["viaPoll"] == 3
    assert stack.sim.deliveries == []
    assert "imagedock_webhooks_missed_total 3.0" in (await stack.api.get("/metrics")).text
    assert sorted(e["data"]["jobId"] for e in stack.delivered("job.landed")) == sorted(job_ids)
    assert await stack.redis.zcard(POLL_SET) == 0


async def test_a_late_webhook_after_polling_lands_nothing_twice(stack: Stack) -> None:
    """The poller lands the job; the webhook that comes after changes nothing."""
    stack.sim.config.delay_seconds = 1.0
    job_id = (await stack.submit())["jobId"]
    while stack.sim.jobs[job_id].status != "COMPLETED":
        await asyncio.sleep(0.01)
    await stack.wait_until_due()
    await stack.poll()
    await stack.run_worker(settle=False)
    assert (await stack.job(job_id))["status"] == "LANDED"
    assert stack.sim.deliveries_for(job_id) == []

    await stack.sim.settle()  # the late webhook arrives now
    await stack.run_worker()
    assert [d.status for d in stack.sim.deliveries_for(job_id)] == [200]
    events = await stack.log_events(job_id)
    assert (events.count("image.stored"), events.count("job.landed")) == (1, 1)
    assert [e["id"] for e in stack.delivered()] == [event_id(job_id, "job.landed")]


async def test_a_job_stuck_past_the_deadline_times_out(stack: Stack) -> None:
    """A job still PROCESSING past IMAGEDOCK_JOB_DEADLINE ends TIMED_OUT with a job.failed."""
    stack.sim.config.stall = True
    stack.settings.job_deadline = 0.1
    job_id = (await stack.submit())["jobId"]
    await stack.sim.settle()
    await stack.wait_until_due()
    await stack.poll()
    await stack.run_worker()
    job = await stack.job(job_id)
    assert job["status"] == "TIMED_OUT"
    assert "still PROCESSING" in job["error"]
    [event] = stack.delivered("job.failed")
    assert event["data"]["status"] == "TIMED_OUT"
    assert "still PROCESSING" in event["data"]["reason"]


async def test_a_still_running_job_is_polled_again_later(stack: Stack) -> None:
    """Before the deadline a running job stays tracked, its progress recorded."""
    stack.sim.config.stall = True
    answer = await stack.submit()
    await stack.sim.settle()
    await stack.wait_until_due()
    await stack.poll()
    job = await stack.job(answer["jobId"])
    assert job["status"] == "PROCESSING"
    assert await stack.redis.zscore(POLL_SET, answer["ref"]) is not None


async def test_a_tracked_job_lands_through_polling(stack: Stack) -> None:
    """A job submitted elsewhere, adopted with POST /jobs/track, lands like any other."""
    async with ApiframeClient(stack.apiframe_url, API_KEY) as client:
        submission = await client.submit(ApiframeRequest(prompt="submitted by someone else"))
    await stack.sim.settle()
    tracked = await stack.api.post("/jobs/track", json={"jobId": submission.job_id})
    again = await stack.api.post("/jobs/track", json={"jobId": submission.job_id})
    bad = await stack.api.post("/jobs/track", json={"jobId": "nope"})
    assert (tracked.status_code, again.status_code, bad.status_code) == (202, 200, 400)
    made_up = str(uuid.uuid4())
    unknown = await stack.api.post("/jobs/track", json={"jobId": made_up})
    assert unknown.status_code == 404
    assert made_up in unknown.json()["error"]
    assert await stack.ledger.by_job_id(made_up) is None
    assert again.json()["ref"] == tracked.json()["ref"]
    await stack.poll()
    await stack.run_worker()
    job = await stack.job(submission.job_id)
    assert (job["status"], job["source"], job["model"]) == ("LANDED", "track", "grok-imagine-image")
    [stored] = job["objects"]
    assert stack.object(stored["key"]) == stack.sim.image(stored["sourceUrl"]).read()


async def test_a_crash_between_landing_and_event_is_finished_by_the_poller(stack: Stack) -> None:
    """A job left LANDED with its event unpublished gets the event on the next poll."""
    stack.sim.config.stall = True
    answer = await stack.submit()
    await stack.sim.settle()
    # What a worker killed right after the LANDED transition leaves behind.
    assert await stack.ledger.transition(answer["ref"], Status.LANDED, "worker")
    assert stack.delivered() == []
    await stack.wait_until_due()
    await stack.poll()
    await stack.run_worker()
    assert [e["id"] for e in stack.delivered()] == [event_id(answer["jobId"], "job.landed")]


async def test_replay_restores_objects_and_redelivers_the_same_event(stack: Stack) -> None:
    """A replay puts back an object deleted from S3 and delivers the event again, same id."""
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    [stored] = (await stack.job(job_id))["objects"]
    stack.s3.delete_object(Bucket=BUCKET, Key=stored["key"])
    response = await stack.api.post(f"/jobs/{job_id}/replay")
    assert response.status_code == 202
    await stack.run_worker()
    assert stack.object(stored["key"]) == stack.sim.image(stored["sourceUrl"]).read()
    ids = [e["id"] for e in stack.delivered()]
    assert ids == [event_id(job_id, "job.landed")] * 2


async def test_a_replay_asked_for_during_the_landing_fetches_nothing_twice(stack: Stack) -> None:
    """A replay queued while the job's landing is queued or running waits for it to end: each
    image is fetched once, and the event is delivered once more."""
    stack.sim.config.images_per_job = 2
    stack.sim.config.image_bytes = 500_000
    stack.sim.config.cdn_chunk_delay = 0.05  # a landing that takes a moment
    job_id = (await stack.submit())["jobId"]
    await stack.sim.settle()  # its landing is queued
    assert (await stack.api.post(f"/jobs/{job_id}/replay")).status_code == 202
    await stack.run_worker(settle=False)
    assert (await stack.job(job_id))["status"] == "LANDED"
    assert sorted(stack.sim.cdn_requests.values()) == [1, 1]
    assert [e["id"] for e in stack.delivered()] == [event_id(job_id, "job.landed")] * 2


async def test_a_worker_killed_mid_landing_is_finished_by_the_next(stack: Stack) -> None:
    """SIGKILL after the first of two images: a restarted worker stores the rest, once."""
    stack.settings.landing_timeout = 5
    stack.settings.claim = 5  # the next worker takes a dead worker's job up 5 s later
    stack.sim.config.images_per_job = 2
    stack.sim.config.image_bytes = 1_000_000
    stack.sim.config.cdn_chunk_delay = 0.1  # each image takes over a second to arrive
    job_id = (await stack.submit())["jobId"]
    await stack.sim.settle()
    with killable_worker(stack) as process:
        for _ in range(600):
            if "image.stored" in await stack.log_events(job_id):
                break
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    events = await stack.log_events(job_id)
    assert events.count("image.stored") == 1  # the landing had begun when the worker died
    assert "job.landed" not in events
    stack.sim.config.cdn_chunk_delay = 0
    await stack.run_worker()  # waits out the dead worker's claim, then lands
    job = await stack.job(job_id)
    assert job["status"] == "LANDED"
    assert len(job["objects"]) == 2
    for stored in job["objects"]:
        assert stack.object(stored["key"]) == stack.sim.image(stored["sourceUrl"]).read()
    events = await stack.log_events(job_id)
    assert events.count("image.stored") == 2
    assert [e["id"] for e in stack.delivered()] == [event_id(job_id, "job.landed")]


async def test_the_polling_worker_polls_at_start(stack: Stack) -> None:
    """The polling worker's cron runs when it starts and queues the landing of a missed job."""
    stack.sim.config.drop_rate = 1.0
    job_id = (await stack.submit())["jobId"]
    await stack.sim.settle()
    await stack.wait_until_due()
    poller = build_poll_worker(stack.deps, burst=True, handle_signals=False, poll_delay=0.01)
    try:
        await poller.main()
    finally:
        await poller.release()
    await stack.run_worker()
    assert (await stack.job(job_id))["status"] == "LANDED"
    assert "webhook.missed" in await stack.log_events(job_id)


async def test_a_poll_that_finds_the_webhook_got_there_first_counts_nothing_missed(
    stack: Stack,
) -> None:
    """When the poller reads a job a webhook then completes before the poller's own move, the
    job is not counted as a missed webhook."""
    answer = await stack.submit()
    await stack.sim.settle()  # its webhooks came: the record is COMPLETED
    record = await stack.ledger.get(answer["ref"])
    assert record is not None
    assert record.status == Status.COMPLETED
    job = await stack.deps.apiframe.get_job(answer["jobId"])
    await follow(stack.deps.polling, record, job)
    assert "webhook_missed" not in await counters(stack.redis)
    assert "webhook.missed" not in await stack.log_events(answer["jobId"])
