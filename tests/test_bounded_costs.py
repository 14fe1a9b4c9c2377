"""What careless or hostile requests cost: copies of a webhook, unsigned hints, repeated replays
and tampered cursors each cost a counter or a refusal, never history, calls out or an outage."""

import asyncio
import base64
import hashlib
import json
import time

import pytest

from receiver.admission import Admission, Busy
from receiver.jobs import LIST_PROMPT, PRESIGN_MOST
from receiver.live_log import LogFanout
from receiver.webhooks import CONFIRM_INTERVAL
from tests.support.ledger import counters, recent
from tests.support.stack import Stack
from tests.support.waiting import eventually
from tests.support.webhooks import post_hook
from worker.ledger import keys
from worker.ledger.ledger import UNSENT_RETENTION
from worker.ledger.records import StoredObject
from worker.sinks.body import event_id

COPIES = 1_000  # what a thousand careless or hostile requests cost


def job_body(job_id: str, status: str, **more: object) -> dict[str, object]:
    return {"jobId": job_id, "status": status, "model": "grok-imagine-image", **more}


async def test_copies_of_a_signed_webhook_are_counted_not_logged(stack: Stack) -> None:
    """A captured signed webhook sent again and again leaves one entry in the job's log; the
    copies are counted as duplicates."""
    stack.sim.config.stall = True
    answer = await stack.submit()
    await stack.sim.settle()
    body = job_body(answer["jobId"], "PROCESSING", progress=40)
    sent = await asyncio.gather(*(post_hook(stack, body) for _ in range(COPIES)))
    assert {response.status_code for response in sent} == {200}
    events = await stack.log_events(answer["jobId"])
    assert events.count("webhook.accepted") == 1
    stats = (await stack.api.get("/metrics")).text
    assert f'imagedock_webhooks_received_total{{outcome="duplicate"}} {COPIES - 1}.0' in stats


async def test_unsigned_hints_confirm_a_job_once_an_interval(stack: Stack) -> None:
    """Unsigned webhooks naming a running job ask Apiframe about it once, and write nothing."""
    stack.sim.config.stall = True
    answer = await stack.submit()
    await stack.sim.settle()
    before = await stack.log_events(answer["jobId"])
    body = job_body(answer["jobId"], "COMPLETED")
    confirming = []
    started = time.monotonic()
    for _ in range(4):  # a worker between the rounds: each round's confirmation has ended
        sent = [await post_hook(stack, body, sign_it=False) for _ in range(COPIES // 4)]
        assert {response.status_code for response in sent} == {202}
        confirming += [response.json().get("confirming") for response in sent]
        await stack.run_worker(settle=False)
    # Once an interval: on a machine slow enough to take more than one, once each.
    intervals = 1 + int((time.monotonic() - started) // CONFIRM_INTERVAL)
    assert 1 <= confirming.count(True) <= intervals
    asked = [r for r in stack.sim.received if r.path == f"/v2/jobs/{answer['jobId']}"]
    assert len(asked) == confirming.count(True)
    added = (await stack.log_events(answer["jobId"]))[len(before) :]
    assert added.count("job.confirmed") == confirming.count(True)
    assert [event for event in added if event.startswith("webhook.")] == []


async def test_unsigned_early_webhooks_write_nothing(stack: Stack) -> None:
    """Unsigned webhooks on a submission with no job id yet (its ref known) write no entry."""
    stack.sim.config.stall = True
    answer = await stack.submit()
    await stack.sim.settle()
    ref = answer["ref"]
    await stack.redis.hdel(keys.job(ref), "job_id")  # type: ignore[misc]  # as if no 202 yet
    before = (await stack.api.get(f"/jobs/{ref}/log")).json()["entries"]
    for _ in range(COPIES):
        sent = await post_hook(stack, job_body(answer["jobId"], "QUEUED"), ref=ref, sign_it=False)
        assert sent.status_code == 202
    assert (await stack.api.get(f"/jobs/{ref}/log")).json()["entries"] == before


async def test_a_replay_asked_for_again_is_refused_until_the_interval_ends(stack: Stack) -> None:
    """The first replay is queued and logged; the next ones are 429 with `Retry-After`."""
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    first = await stack.api.post(f"/jobs/{job_id}/replay")
    again = [await stack.api.post(f"/jobs/{job_id}/replay") for _ in range(COPIES)]
    assert first.status_code == 202
    assert {response.status_code for response in again} == {429}
    assert all(0 < int(r.headers["retry-after"]) <= 60 for r in again)
    assert (await stack.log_events(job_id)).count("job.replay_requested") == 1
    await stack.run_worker()
    assert len(stack.delivered("job.landed")) == 2  # the landing's, and the one replay's


@pytest.mark.parametrize("score", ["nan", "1_000", "inf", " 17", "1e999999"])
async def test_a_tampered_cursor_is_the_callers_mistake(stack: Stack, score: str) -> None:
    """A cursor whose score Python would read but Redis refuses is a 400, not an outage."""
    cursor = base64.urlsafe_b64encode(json.dumps([score, "0" * 32]).encode()).decode()
    answer = await stack.api.get("/jobs", params={"cursor": cursor})
    assert answer.status_code == 400, answer.text
    assert "cursor" in answer.text


async def test_a_route_that_takes_no_query_refuses_one(stack: Stack) -> None:
    """`POST /events/redrive?dry_run=1` is refused by name and redrives nothing."""
    stack.events.statuses = [503] * 5
    await stack.submit()
    await stack.run_worker()
    refused = await stack.api.post("/events/redrive", params={"dry_run": "1"})
    assert refused.status_code == 400
    assert refused.json()["details"] == {"dry_run": "this route takes none"}
    assert len((await stack.api.get("/events/dead")).json()["deadLetters"]) == 1


async def test_every_answer_refuses_to_be_framed(stack: Stack) -> None:
    """The page, its assets, the API, refusals and probes all carry the frame protections;
    the page is served from `/` alone."""
    anonymous = stack.api.headers.copy()
    del anonymous["Authorization"]
    answers = [
        await stack.api.get("/"),
        await stack.api.get("/static/dashboard.js"),
        await stack.api.get("/jobs"),
        await stack.api.get("/healthz"),
        await stack.api.get("/metrics"),
        await stack.api.get("/jobs", headers=anonymous),
        await stack.api.get("/no/such/route"),
    ]
    for answer in answers:
        assert answer.headers["x-frame-options"] == "DENY", answer.url
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in answers[0].headers["content-security-policy"]
    assert (await stack.api.get("/static/index.html")).status_code == 404


async def test_a_place_is_waited_for_then_refused() -> None:
    """With every place taken, a request waits its moment and is refused; once one is given
    back, the next is served."""
    admission = Admission(most=2, wait=0.2)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with admission.place():
            held.set()
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await held.wait()
    await asyncio.sleep(0)  # the second holder takes its place too
    with pytest.raises(Busy):
        async with admission.place():
            pass
    release.set()
    await asyncio.gather(*holders)
    async with admission.place():
        pass


async def test_a_list_presigns_a_bounded_number_of_objects(stack: Stack) -> None:
    """A page whose records hold more objects than an answer presigns gives URLs to the first
    `PRESIGN_MOST` only."""
    for n in range(PRESIGN_MOST // 10 + 1):
        record, _ = await stack.ledger.create(prompt=f"job {n}", model="grok-imagine-image")
        for index in range(1, 11):
            key = f"apiframe/{record.ref}/{index}.png"
            stored = StoredObject(index, "images", key, 1, "0" * 64, "image/png", "http://x/")
            await stack.ledger.add_object(record.ref, "", stored, "test", "image.stored")
    page = (await stack.api.get("/jobs", params={"limit": "100", "presign": "60"})).json()
    objects = [stored for job in page["jobs"] for stored in job["objects"]]
    assert len(objects) > PRESIGN_MOST
    assert sum("url" in stored for stored in objects) == PRESIGN_MOST


async def test_a_list_clips_long_prompts(stack: Stack) -> None:
    """A job list shows the start of a long prompt; the job itself shows it whole."""
    prompt = "a long prompt " * 100
    answer = await stack.submit(prompt)
    [listed] = (await stack.api.get("/jobs")).json()["jobs"]
    assert listed["prompt"] == prompt[:LIST_PROMPT] + "…"
    assert (await stack.job(answer["ref"]))["prompt"] == prompt


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"metadata": {f"key{n}": "v" * 200 for n in range(32)}}, "metadata"),
        ({"model": "flux-2-pro", "params": {"prompt_upsampling": "x" * 9000}}, "params"),
    ],
)
async def test_what_a_record_keeps_is_capped(
    stack: Stack, body: dict[str, object], named: str
) -> None:
    """Metadata over 4 KiB or params over 8 KiB are refused by name, and nothing is kept."""
    answer = await stack.api.post("/jobs", json={"prompt": "a gull", **body})
    assert answer.status_code == 400
    assert named in json.dumps(answer.json())
    assert await recent(stack.ledger) == []


async def test_a_submission_apiframe_refused_is_kept_a_day(stack: Stack) -> None:
    """A job Apiframe refused (nothing billed) expires after a day, not the retention."""
    stack.sim.fail_next(400, path="/v2/images/generate")
    answer = await stack.api.post("/jobs", json={"prompt": "a gull"})
    assert (await stack.submitted(answer.json()["ref"]))["status"] == "FAILED"
    [record] = await recent(stack.ledger)
    assert record.status == "FAILED"
    for key in (keys.job(record.ref), keys.job_log(record.ref)):
        assert 0 < await stack.redis.ttl(key) <= UNSENT_RETENTION


async def test_copies_of_a_keyed_submit_at_once_call_apiframe_once(stack: Stack) -> None:
    """A hundred copies of one keyed `POST /jobs` at once make one record, one `job.created` and
    one call to Apiframe; each copy is told the job's ref, or to retry (409)."""
    stack.sim.config.response_delay_seconds = 0.2  # copies arrive while the first is sent
    key = {"Idempotency-Key": "burst-1"}
    answers = await asyncio.gather(
        *(stack.api.post("/jobs", json={"prompt": "a wren"}, headers=key) for _ in range(100))
    )
    assert {answer.status_code for answer in answers} <= {202, 409}
    accepted = {answer.json()["ref"] for answer in answers if answer.status_code == 202}
    assert len(accepted) == 1
    [ref] = accepted
    await stack.submitted(ref)
    assert len(stack.sim.submissions()) == 1
    entries = (await stack.api.get(f"/jobs/{ref}/log")).json()["entries"]
    assert [entry["event"] for entry in entries].count("job.created") == 1
    assert (await counters(stack.redis))["submitted"] == 1


async def test_apiframe_answering_409_to_a_key_in_flight_fails_nothing(stack: Stack) -> None:
    """A 409 from Apiframe for imagedock's own key (still in flight on its side) leaves the job
    waiting, and its next send goes through."""
    stack.sim.fail_next(409, path="/v2/images/generate")
    accepted = await stack.accept("a wren")
    job_id = (await stack.submitted(accepted["ref"]))["jobId"]
    assert [r.status for r in stack.sim.submissions()] == [409, 202]
    await stack.run_worker()
    assert (await stack.job(job_id))["status"] == "LANDED"


async def test_a_callers_ref_cannot_be_computed_from_its_key(stack: Stack) -> None:
    """The ref a caller's Idempotency-Key is given is stable, and not the key's plain digest."""
    key = {"Idempotency-Key": "known-to-many"}
    first = await stack.api.post("/jobs", json={"prompt": "a wren"}, headers=key)
    again = await stack.api.post("/jobs", json={"prompt": "a wren"}, headers=key)
    assert first.json()["ref"] == again.json()["ref"]
    plain = hashlib.sha256(b"submit:known-to-many").hexdigest()[:32]
    assert first.json()["ref"] != plain


async def test_a_command_redis_refuses_is_a_500_not_an_outage(stack: Stack) -> None:
    """Redis answering with an error (a key of the wrong type) is imagedock's fault, said as a
    500 without `Retry-After`; only a Redis that does not answer is a 503."""
    await stack.redis.set(keys.BY_TIME, "not a sorted set")
    answer = await stack.api.get("/jobs")
    assert answer.status_code == 500
    assert "retry-after" not in answer.headers
    assert "Redis refused a command" in answer.json()["error"]


async def test_copies_of_a_signed_early_webhook_are_logged_once(stack: Stack) -> None:
    """Signed webhooks on a submission with no job id yet: the first is kept and logged, its
    copies only counted."""
    stack.sim.config.stall = True
    answer = await stack.submit()
    await stack.sim.settle()
    ref = answer["ref"]
    await stack.redis.hdel(keys.job(ref), "job_id")  # type: ignore[misc]  # as if no 202 yet
    for _ in range(5):
        sent = await post_hook(stack, job_body(answer["jobId"], "QUEUED"), ref=ref)
        assert sent.status_code == 202
    entries = (await stack.api.get(f"/jobs/{ref}/log")).json()["entries"]
    assert [entry["event"] for entry in entries].count("webhook.early") == 1


async def test_a_stream_never_read_holds_no_place(stack: Stack) -> None:
    """HEAD requests for the live log, and streams asked for but never read, take none of the
    places streams have."""
    for _ in range(stack.settings.streams_max + 5):
        head = await stack.api.head("/log", headers={"Accept": "text/event-stream"})
        assert head.status_code == 200
    fanout = LogFanout(stack.ledger, most=2)
    unread = [fanout.stream(None) for _ in range(5)]
    assert fanout.open == 0
    for stream in unread:
        await stream.aclose()
    async with stack.api.stream("GET", "/log", headers={"Accept": "text/event-stream"}) as live:
        assert live.status_code == 200


async def test_the_event_of_a_refused_submission_is_kept_no_longer_than_its_job(
    stack: Stack,
) -> None:
    """A submission Apiframe refused sends its `job.failed`, which Redis keeps a day, as the job."""
    stack.sim.fail_next(400, path="/v2/images/generate")
    answer = await stack.api.post("/jobs", json={"prompt": "a gull"})
    assert (await stack.submitted(answer.json()["ref"]))["status"] == "FAILED"
    [record] = await recent(stack.ledger)
    stored = keys.event(event_id(record.ref, "job.failed"))

    async def published() -> bool:
        return bool(await stack.redis.exists(stored))

    await eventually(published, "the job.failed event stored", 10)
    assert 0 < await stack.redis.ttl(stored) <= UNSENT_RETENTION
