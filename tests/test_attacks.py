"""Attacks and neglect, each reproduced first: what a hostile client or a careless operator
does, and what imagedock keeps or refuses."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from starlette.requests import Request
from starlette.types import Message
from structlog.testing import capture_logs

from receiver.bodies import BodyRefused, read_capped
from tests.support.ledger import recent
from tests.support.stack import API_KEY, Stack
from tests.support.waiting import eventually
from tests.support.webhooks import HOOK, post_hook, rejected, signed
from worker.apiframe.client import key_for
from worker.ledger.keys import POLL_SET
from worker.submission import caller_ref

MiB = 1024 * 1024


async def used_memory(stack: Stack) -> int:
    info = await stack.redis.info("memory")
    return int(info["used_memory"])


async def test_fifteen_hundred_refused_webhooks_cost_redis_almost_nothing(stack: Stack) -> None:
    """Refusals with big headers and big refs grow Redis by under 2 MB, flush no real history,
    and are logged as a clipped sample, not one line each."""
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    history = await stack.ledger.history.after(count=1000)
    before = await used_memory(stack)
    junk = "x" * 8000
    requests = [
        {"headers": {"content-type": f"text/{junk}"}, "params": {}},  # 415, a huge media type
        {"headers": {"content-type": "application/json"}, "params": {"ref": junk[:3000]}},  # 404
        # 431; the server closes the connection after it, so the client must not reuse it
        {
            "headers": {
                "content-type": "application/json",
                "x-pad": junk * 3,
                "connection": "close",
            },
            "params": {},
        },
    ]
    limit = asyncio.Semaphore(50)

    async def attack(n: int) -> int:
        async with limit:
            shape = requests[n % len(requests)]
            response = await stack.api.post(HOOK, content=b"{}", **shape)  # type: ignore[arg-type]
            return response.status_code

    with capture_logs() as logs:
        statuses = await asyncio.gather(*(attack(n) for n in range(1_500)))
    assert set(statuses) == {415, 404, 431}
    assert await used_memory(stack) - before < 2 * MiB
    assert await stack.ledger.history.after(count=1000) == history
    assert (await stack.job(job_id))["status"] == "LANDED"
    counted = await rejected(stack)
    assert (counted["media_type"], counted["bad_ref"]) == (500, 500)
    sample = [line for line in logs if line["event"] == "webhook.rejected"]
    reached = counted["media_type"] + counted["bad_ref"]  # the 431s never reach the route
    # A sample, one line per reason per second, each saying how many it left out before it.
    assert 0 < len(sample) <= reached // 10
    assert len(sample) + sum(line["left_out"] for line in sample) <= reached
    assert all(len(str(line.get("content_type", ""))) < 120 for line in sample)
    assert all(len(str(line.get("ref", ""))) < 120 for line in sample)


async def test_a_signed_webhook_cannot_lend_its_job_to_a_waiting_submission(
    stack: Stack,
) -> None:
    """Job A's old signed webhook posted on the ref of job B, waiting to be submitted after a
    503, does not attach A to B: A keeps its record, and B still gets a job of its own."""
    a = (await stack.submit("a"))["jobId"]
    await stack.run_worker()
    stack.sim.fail_next(503, path="/v2/images/generate")
    waiting = await stack.accept("b")
    b_ref = waiting["ref"]

    async def refused() -> bool:
        return len(stack.sim.submissions()) == 2

    await eventually(refused, "B's submit answered 503")
    replayed = await post_hook(stack, {"jobId": a, "status": "PROCESSING"}, ref=b_ref)
    assert replayed.status_code == 202
    assert await stack.ledger.ref_for(a) != b_ref
    assert (await stack.job(a))["status"] == "LANDED"

    b = await stack.submitted(b_ref)
    assert b["jobId"] not in (None, a)
    assert "webhook.early_ignored" in await stack.log_events(b_ref)


async def test_redis_losing_its_data_bills_no_second_job(stack: Stack) -> None:
    """After Redis is emptied, the same POST /jobs with the same Idempotency-Key is sent to
    Apiframe with the same key, and Apiframe answers with the job it already has."""
    stack.sim.config.drop_rate = 1.0
    first = await stack.api.post("/jobs", json={"prompt": "p"}, headers={"Idempotency-Key": "k"})
    job_id = (await stack.submitted(first.json()["ref"]))["jobId"]
    await stack.redis.flushdb()
    again = await stack.api.post("/jobs", json={"prompt": "p"}, headers={"Idempotency-Key": "k"})
    assert again.status_code == 202
    assert again.json()["ref"] == first.json()["ref"]
    assert (await stack.submitted(again.json()["ref"]))["jobId"] == job_id
    assert len(stack.sim.jobs) == 1


async def test_a_signed_webhook_for_a_lost_record_is_adopted(stack: Stack) -> None:
    """A genuine signed webhook whose ref the emptied Redis no longer knows lands its job."""
    stack.sim.config.delay_seconds = 0.3
    job_id = (await stack.submit())["jobId"]
    await stack.redis.flushdb()
    await stack.run_worker()
    job = await stack.job(job_id)
    assert (job["status"], job["source"], len(job["objects"])) == ("LANDED", "adopted", 1)


async def test_unsigned_webhooks_cannot_postpone_polling(stack: Stack) -> None:
    """A stream of unsigned QUEUED webhooks writes nothing, moves no poll, and queues at most one
    confirmation at a time."""
    stack.sim.config.stall = True
    stack.sim.config.drop_rate = 1.0
    answer = await stack.submit()
    due = await stack.redis.zscore(POLL_SET, answer["ref"])
    hint = {"jobId": answer["jobId"], "status": "QUEUED"}
    answers = [await post_hook(stack, hint, ref=answer["ref"], sign_it=False) for _ in range(5)]
    assert [a.json()["confirming"] for a in answers] == [True, False, False, False, False]
    assert await stack.redis.zscore(POLL_SET, answer["ref"]) == due
    job = await stack.job(answer["jobId"])
    assert (job["lastWebhookAt"], job["status"]) == (None, "QUEUED")
    events = await stack.log_events(answer["jobId"])
    assert "webhook.accepted" not in events


async def test_a_non_hex_signature_is_a_401_not_a_500(stack: Stack) -> None:
    """A signature header with non-ASCII bytes is refused like any wrong signature."""
    job_id = (await stack.submit())["jobId"]
    body, _ = signed({"jobId": job_id, "status": "COMPLETED"})
    for bad in (b"sha256=\xe9", b"sha256=" + b"g" * 64, b"\xff" * 71):
        response = await stack.api.post(
            HOOK,
            content=body,
            headers={b"content-type": b"application/json", b"x-webhook-signature": bad},
        )
        assert response.status_code == 401
    assert (await rejected(stack))["bad_signature"] == 3


async def test_api_bodies_are_capped(stack: Stack) -> None:
    """A huge POST /jobs is refused at 64 KiB, whether it declares its length or streams."""

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b" " * 64 * 1024

    declared = await stack.api.post("/jobs", content=b"{" + b" " * MiB + b"}")
    streamed = await stack.api.post("/jobs", content=stream())
    tracked = await stack.api.post("/jobs/track", content=stream())
    for response in (declared, streamed, tracked):
        assert response.status_code == 413
        assert "over 65536 bytes" in response.json()["error"]
    assert await recent(stack.ledger) == []


async def test_a_slow_body_is_cut_off(stack: Stack) -> None:
    """A webhook body that trickles in past the deadline gets 408 and holds nothing."""
    stack.settings.body_deadline = 0.3

    async def trickle() -> AsyncIterator[bytes]:
        for piece in (b'{"jobId": "', b"x", b'"}'):
            yield piece
            await asyncio.sleep(0.25)

    response = await stack.api.post(
        HOOK, content=trickle(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 408
    assert (await rejected(stack)) == {"slow_body": 1}


async def test_a_webhook_with_headers_past_the_limit_is_refused_unread(stack: Stack) -> None:
    """Headers over 16 KiB get 431 before any route looks at them."""
    body, headers = signed({"jobId": str(uuid.uuid4()), "status": "COMPLETED"}, API_KEY)
    response = await stack.api.post(HOOK, content=body, headers={**headers, "x-big": "y" * 20_000})
    assert response.status_code == 431
    assert json.loads(response.text)["error"].startswith("request headers are over")
    assert await rejected(stack) == {}


async def test_a_non_ascii_result_url_lands_with_ascii_metadata(stack: Stack) -> None:
    """A result URL with non-ASCII characters and great length still lands: its metadata is
    percent-encoded and kept under S3's 2 KB."""
    stack.sim.config.drop_rate = 1.0
    answer = await stack.submit()
    await stack.sim.settle()
    [url] = stack.sim.jobs[answer["jobId"]].image_urls
    odd = url + "?name=caf\u00e9-" + "\u00fc" * 1500
    body = {"jobId": answer["jobId"], "status": "COMPLETED", "result": {"images": [odd]}}
    assert (await post_hook(stack, body, ref=answer["ref"])).status_code == 200
    await stack.run_worker()
    job = await stack.job(answer["jobId"])
    assert job["status"] == "LANDED", job["error"]
    head = stack.s3.head_object(Bucket="images", Key=job["objects"][0]["key"])
    source = head["Metadata"]["source-url"]
    assert source.isascii()
    assert "caf%C3%A9" in source
    assert sum(len(k) + len(v) for k, v in head["Metadata"].items()) < 2048


async def test_a_long_failure_reason_is_cut_short(stack: Stack) -> None:
    """A refused result URL of any length leaves a reason of bounded length, in the record
    and in the job.failed event."""
    stack.sim.config.drop_rate = 1.0
    answer = await stack.submit()
    await stack.sim.settle()
    body = {"jobId": answer["jobId"], "status": "COMPLETED", "result": {"images": []}}
    body["result"] = {"images": ["ftp://" + "a" * 5000]}
    assert (await post_hook(stack, body, ref=answer["ref"])).status_code == 200
    await stack.run_worker()
    job = await stack.job(answer["jobId"])
    assert job["status"] == "FAILED"
    assert job["error"].startswith("refused result URL 'ftp://aaa")
    assert len(job["error"]) <= 503
    [event] = stack.delivered("job.failed")
    assert event["data"]["reason"] == job["error"]


async def test_more_images_than_any_model_returns_fail_the_job(stack: Stack) -> None:
    """A signed result listing more images than the model returns fails with the reason and
    downloads none of them."""
    stack.sim.config.drop_rate = 1.0
    answer = await stack.submit()
    await stack.sim.settle()
    [url] = stack.sim.jobs[answer["jobId"]].image_urls
    body = {"jobId": answer["jobId"], "status": "COMPLETED", "result": {"images": [url] * 11}}
    assert (await post_hook(stack, body, ref=answer["ref"])).status_code == 200
    await stack.run_worker()
    job = await stack.job(answer["jobId"])
    assert (job["status"], job["objects"]) == ("FAILED", [])
    assert job["error"] == "Apiframe returned 11 images; grok-imagine-image returns 4"


async def test_a_client_that_leaves_mid_body_is_refused_not_a_500() -> None:
    """A body cut off by a disconnect is a 400 like any refused body, not a server error."""
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"jobId": ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(BodyRefused) as refused:
        await read_capped(request, 1024, 5.0)
    assert refused.value.status == 400


async def test_a_claim_left_without_its_record_does_not_block_the_key(stack: Stack) -> None:
    """A create that died between claiming the caller's key and writing the record leaves the
    key usable: the retry makes the record, instead of a day of 409s."""
    ref = caller_ref("submit:left", stack.deps.submitting.ref_secret)
    await stack.redis.set("imagedock:idem:submit:left", ref, ex=3600)
    response = await stack.api.post(
        "/jobs", json={"prompt": "p"}, headers={"Idempotency-Key": "left"}
    )
    assert response.status_code == 202, response.text
    assert response.json()["ref"] == ref


def test_a_respelled_body_alone_gets_a_derived_key() -> None:
    """The key follows the body, not the process: a body without Grok's other spelling keeps
    the caller's key in every process; one with it gets the same derived key everywhere."""
    assert key_for("k", {"model": "flux-2-pro", "fluxParams": {}}) == "k"
    assert key_for("k", {"grokImagineParams": {}}) == "k"
    respelled = key_for("k", {"grokParams": {}})
    assert respelled is not None
    assert respelled.startswith("k~")
    assert respelled == key_for("k", {"grokParams": {"aspect_ratio": "1:1"}})
    assert len(key_for("x" * 255, {"grokParams": {}}) or "") <= 255
