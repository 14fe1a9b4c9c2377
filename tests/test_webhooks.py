"""Every webhook case a receiver must survive, with the simulator's faults switched on. Each test
checks the S3 objects, the ledger status and the job log."""

import asyncio
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from tests.support.ledger import counters, recent
from tests.support.stack import API_KEY, Stack
from tests.support.webhooks import HOOK, post_hook, rejected
from worker.ledger.keys import POLL_SET


async def assert_landed(stack: Stack, job_id: str, images: int = 1) -> dict[str, Any]:
    job = await stack.job(job_id)
    assert job["status"] == "LANDED", job
    assert len(job["objects"]) == images
    assert len(stack.keys(job_id)) == images + 1  # and the manifest
    for stored in job["objects"]:
        assert stack.object(stored["key"]) == stack.sim.image(stored["sourceUrl"]).read()
    events = await stack.log_events(job_id)
    assert events.count("image.stored") == images
    assert events.count("job.landed") == 1
    return job


async def test_concurrent_duplicates_land_once(stack: Stack) -> None:
    """Five concurrent copies of the completed webhook: one landing, each image stored once, one
    `webhook.accepted` entry and four duplicates counted."""
    stack.sim.config.duplicates = 5
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    await assert_landed(stack, job_id)
    events = await stack.log_events(job_id)
    assert events.count("webhook.accepted") == 1
    assert (await counters(stack.redis))["webhook:duplicate"] == 4
    assert events.count("image.stored") == 1
    assert events.count("job.landed") == 1
    assert all(d.status == 200 for d in stack.sim.deliveries_for(job_id))


async def test_early_delivery_is_reconciled(stack: Stack) -> None:
    """A webhook that arrives before the 202 was recorded is kept and the job still lands."""
    stack.sim.config.early = True
    stack.sim.config.unsigned = True  # unsigned: it cannot attach the job id by itself
    answer = await stack.submit()
    await stack.run_worker()
    await assert_landed(stack, answer["jobId"])
    events = await stack.log_events(answer["jobId"])
    assert "webhook.early" not in events  # anyone may send an unsigned one: none is logged
    assert "webhook.reconciled" in events


async def test_signed_early_delivery_attaches_the_job(stack: Stack) -> None:
    """A signed webhook before the 202 proves the job id and is handled at once."""
    stack.sim.config.early = True
    answer = await stack.submit()
    await stack.run_worker()
    await assert_landed(stack, answer["jobId"])


async def test_unsigned_webhooks_are_confirmed_before_downloading(stack: Stack) -> None:
    """An unsigned webhook is a hint: the worker asks Apiframe for the job, then lands it."""
    stack.sim.config.unsigned = True
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    await assert_landed(stack, job_id)
    assert "job.confirmed" in await stack.log_events(job_id)
    assert any(r.path == f"/v2/jobs/{job_id}" for r in stack.sim.received)


async def test_forged_unsigned_completion_of_a_running_job_changes_nothing(stack: Stack) -> None:
    """An unsigned 'completed' for a job still running downloads nothing and fails nothing."""
    stack.sim.config.stall = True
    stack.sim.config.drop_rate = 1.0
    answer = await stack.submit()
    await stack.sim.settle()
    poll_at = await stack.redis.zscore(POLL_SET, answer["ref"])
    forged = {"jobId": answer["jobId"], "status": "COMPLETED", "result": {"images": ["x"]}}
    response = await post_hook(stack, forged, ref=answer["ref"], sign_it=False)
    assert response.status_code == 202
    # A hint writes nothing and postpones nothing: the poll stays due when it was.
    assert (await stack.job(answer["jobId"]))["lastWebhookAt"] is None
    assert await stack.redis.zscore(POLL_SET, answer["ref"]) == poll_at
    await stack.run_worker()
    job = await stack.job(answer["jobId"])
    assert job["status"] == "PROCESSING"
    assert job["objects"] == []
    assert stack.keys(answer["jobId"]) == []


async def test_a_wrong_signature_is_refused_and_logged(stack: Stack) -> None:
    """A signature that does not verify answers 401 and changes nothing."""
    stack.sim.config.wrong_signature = True
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    job = await stack.job(job_id)
    assert job["status"] == "QUEUED"
    assert stack.keys(job_id) == []
    assert [d.status for d in stack.sim.deliveries_for(job_id)] == [401]
    assert await rejected(stack) == {"bad_signature": 1}


async def test_another_submissions_job_changes_nothing(stack: Stack) -> None:
    """A webhook naming job B on job A's ref is refused; neither job changes."""
    stack.sim.config.stall = True
    first, second = await stack.submit("one"), await stack.submit("two")
    await stack.sim.settle()
    body = {"jobId": second["jobId"], "status": "COMPLETED", "result": {"images": []}}
    response = await post_hook(stack, body, ref=first["ref"])
    assert response.status_code == 409
    await stack.run_worker()
    for answer in (first, second):
        job = await stack.job(answer["jobId"])
        assert (job["status"], job["objects"]) == ("QUEUED", [])
    assert await rejected(stack) == {"other_job": 1}


@pytest.mark.parametrize(
    ("ref", "sign_it", "reason"),
    [(None, True, "unknown_job"), ("0" * 32, False, "unknown_job"), ("../x", True, "bad_ref")],
)
async def test_unknown_jobs_are_404(
    stack: Stack, ref: str | None, sign_it: bool, reason: str
) -> None:
    """A job imagedock never submitted, with no ref, a ref of the wrong shape, or an unsigned
    body, is a 404 that is counted and stores nothing."""
    body = {"jobId": str(uuid.uuid4()), "status": "COMPLETED"}
    response = await post_hook(stack, body, ref=ref, sign_it=sign_it)
    assert response.status_code == 404
    assert await rejected(stack) == {reason: 1}
    assert (await stack.api.get("/log")).json()["entries"] == []
    assert await recent(stack.ledger) == []
    metrics = (await stack.api.get("/metrics")).text
    assert f'imagedock_webhooks_rejected_total{{reason="{reason}"}} 1.0' in metrics


@pytest.mark.parametrize(
    ("content", "content_type", "status", "said"),
    [
        (b"{" + b" " * (1024 * 1024) + b"}", "application/json", 413, "over 1048576 bytes"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"status": "COMPLETED"}', "application/json", 400, "wrong shape: jobId"),
        (b'{"jobId": "x", "status": "DONE"}', "application/json", 400, "wrong shape: jobId"),
        (b"[1, 2]", "application/json", 400, "wrong shape: body"),
        (b"jobId=x", "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
async def test_bad_bodies_get_clear_errors(
    stack: Stack, content: bytes, content_type: str, status: int, said: str
) -> None:
    """Oversized, malformed, wrongly typed or wrongly shaped bodies are refused with a message
    that says which."""
    response = await stack.api.post(HOOK, content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert said in response.json()["error"]
    assert await recent(stack.ledger) == []
    assert (await stack.api.get("/log")).json()["entries"] == []
    assert sum((await rejected(stack)).values()) == 1


async def test_progress_after_completed_never_goes_back(stack: Stack) -> None:
    """A stale progress event after the completed one leaves the job LANDED."""
    stack.sim.config.reorder = True
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    await assert_landed(stack, job_id)
    assert [d.event for d in stack.sim.deliveries_for(job_id)] == ["completed", "progress"]
    events = await stack.log_events(job_id)
    assert events.count("webhook.accepted") == 1  # the stale one changed nothing
    assert events[-1] != "status.changed"


@pytest.mark.parametrize("shape", ["string", "empty"])
async def test_bare_string_and_empty_results_land(stack: Stack, shape: str) -> None:
    """A bare-URL result lands directly; an empty one is re-checked with Apiframe, then lands."""
    stack.sim.config.webhook_result_shape = shape  # type: ignore[assignment]
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    await assert_landed(stack, job_id)
    confirmed = "job.confirmed" in await stack.log_events(job_id)
    assert confirmed is (shape == "empty")


@pytest.mark.parametrize("count", [2, 3, 4])
async def test_several_images_land_in_order(stack: Stack, count: int) -> None:
    """Two to four images land as 1..n under the job's prefix."""
    stack.sim.config.images_per_job = count
    stack.sim.config.image_format = "webp"
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    job = await assert_landed(stack, job_id, images=count)
    assert [o["key"].rsplit("/", 1)[1] for o in job["objects"]] == [
        f"{n}.webp" for n in range(1, count + 1)
    ]


async def test_cdn_outages_are_retried(stack: Stack) -> None:
    """A CDN answering 503 twice is retried by the worker until the image lands."""
    stack.sim.config.cdn_fail_first = 2
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    await assert_landed(stack, job_id)
    assert (await stack.log_events(job_id)).count("landing.retry") == 2


async def test_truncated_downloads_are_retried(stack: Stack) -> None:
    """A body cut short by a CDN that serves no ranges is never stored; the retry, once whole,
    is."""
    stack.sim.config.cdn_truncate = True
    stack.sim.config.cdn_ranges = False
    stack.sim.config.image_bytes = 200_000
    job_id = (await stack.submit())["jobId"]
    await stack.sim.settle()

    async def heal() -> None:
        while "landing.retry" not in await stack.log_events(job_id):
            await asyncio.sleep(0.01)
        stack.sim.config.cdn_truncate = False

    await asyncio.gather(stack.run_worker(), heal())
    await assert_landed(stack, job_id)


async def permanent_failure(stack: Stack, reason: str) -> None:
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    job = await stack.job(job_id)
    assert job["status"] == "FAILED"
    assert reason in job["error"]
    assert job["objects"] == []
    assert stack.keys(job_id) == []
    events = await stack.log_events(job_id)
    assert "job.failed" in events
    assert "landing.retry" not in events


async def test_expired_files_fail_the_job(stack: Stack) -> None:
    """A CDN 404 for an expired file ends the job FAILED, not in endless retries."""
    stack.sim.config.file_ttl_seconds = 0
    await permanent_failure(stack, "expired")


async def test_a_non_image_fails_the_job(stack: Stack) -> None:
    """An HTML page where the image should be ends the job FAILED."""
    stack.sim.config.cdn_content = "html"
    await permanent_failure(stack, "is not an image")


async def test_a_host_outside_the_allow_list_fails_the_job(stack: Stack) -> None:
    """A result URL on a host not in IMAGEDOCK_DOWNLOAD_HOSTS is never fetched."""
    stack.sim.config.result_base_url = stack.apiframe_url.replace("127.0.0.1", "localhost")
    await permanent_failure(stack, "refused result host 'localhost'")
    assert sum(stack.sim.cdn_requests.values()) == 0


async def test_an_image_over_the_cap_fails_the_job(stack: Stack) -> None:
    """A 60 MB image under the 50 MiB cap is refused and nothing is stored."""
    stack.sim.config.image_bytes = 60_000_000
    await permanent_failure(stack, "over the 52428800-byte cap")


async def test_apiframe_failures_end_the_job(stack: Stack) -> None:
    """A failed Apiframe job ends FAILED with Apiframe's reason."""
    stack.sim.config.failure_rate = 1.0
    await permanent_failure(stack, stack.sim.config.failure_message)


async def test_variant_b_signatures_are_trusted_and_logged(stack: Stack) -> None:
    """A hex-digest-keyed signature verifies too, and the log says which variant matched."""
    stack.sim.config.signature_variant = "B"
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    await assert_landed(stack, job_id)
    entries = (await stack.api.get(f"/jobs/{job_id}/log")).json()["entries"]
    accepted = [e["detail"] for e in entries if e["event"] == "webhook.accepted"]
    assert accepted == [{"status": "COMPLETED", "variant": "B"}]
    assert "job.confirmed" not in [e["event"] for e in entries]


async def test_any_configured_key_verifies_during_rotation(stack: Stack) -> None:
    """With keys rotated, a webhook signed with the older key is still trusted."""
    stack.sim.config.stall = True
    answer = await stack.submit()
    await stack.sim.settle()
    stack.settings.apiframe_key = [SecretStr("afk_new_key"), SecretStr(API_KEY)]
    body = {"jobId": answer["jobId"], "status": "PROCESSING", "progress": 40}
    response = await post_hook(stack, body, ref=answer["ref"])
    assert response.status_code == 200
    job = await stack.job(answer["jobId"])
    assert (job["status"], job["progress"]) == ("PROCESSING", 40)
