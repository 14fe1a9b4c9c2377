"""A job submitted through imagedock ends as its images and a manifest in S3."""

import json

from tests.support.stack import BUCKET, Stack
from worker.runtime.queue import enqueue_landing


async def test_a_submitted_job_lands_byte_for_byte(stack: Stack) -> None:
    """POST /jobs, the webhook, the worker: S3 holds exactly what the simulator served."""
    stack.sim.config.images_per_job = 2
    answer = await stack.submit(grokParams={"aspect_ratio": "16:9"}, metadata={"order": "42"})
    job_id = answer["jobId"]
    assert answer["status"] == "QUEUED"
    await stack.run_worker()

    job = await stack.job(job_id)
    assert job["status"] == "LANDED"
    assert job["lastWebhookAt"] is not None
    urls = stack.sim.jobs[job_id].image_urls
    assert [o["sourceUrl"] for o in job["objects"]] == urls
    prefix = f"apiframe/{job_id}/"
    assert stack.keys(job_id) == [prefix + "1.png", prefix + "2.png", prefix + "manifest.json"]
    for stored, url in zip(job["objects"], urls, strict=True):
        assert stack.object(stored["key"]) == stack.sim.image(url).read()
        head = stack.s3.head_object(Bucket=BUCKET, Key=stored["key"])
        assert head["ContentType"] == "image/png"
        assert head["Metadata"]["sha256"] == stored["sha256"]
        assert head["Metadata"]["job-id"] == job_id

    manifest = json.loads(stack.object(prefix + "manifest.json"))
    assert manifest["jobId"] == job_id
    assert manifest["metadata"] == {"order": "42"}
    assert manifest["params"] == {"aspect_ratio": "16:9"}
    assert manifest["objects"] == job["objects"]
    events = await stack.log_events(job_id)
    for expected in (
        "job.created",
        "job.submitted",
        "webhook.accepted",
        "image.downloaded",
        "image.stored",
        "job.landed",
    ):
        assert expected in events
    [submitted] = stack.sim.submissions()
    assert b"/webhooks/apiframe?ref=" + answer["ref"].encode() in submitted.body
    assert submitted.headers["idempotency-key"] == f"imagedock-{answer['ref']}"


async def test_landing_again_changes_nothing(stack: Stack) -> None:
    """Running land_job for a landed job uploads nothing and writes no new log entry."""
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    key = (await stack.job(job_id))["objects"][0]["key"]
    before = stack.s3.head_object(Bucket=BUCKET, Key=key)["LastModified"]
    entries = len(await stack.log_events(job_id))
    cdn_requests = sum(stack.sim.cdn_requests.values())

    assert await enqueue_landing(stack.redis, job_id)
    await stack.run_worker()

    assert (await stack.job(job_id))["status"] == "LANDED"
    assert stack.s3.head_object(Bucket=BUCKET, Key=key)["LastModified"] == before
    assert len(await stack.log_events(job_id)) == entries
    assert sum(stack.sim.cdn_requests.values()) == cdn_requests
