"""`/v2/` against Apiframe's own OpenAPI document: every route's answers and refusals have a
status the document lists and a body its schema takes; each caller key sees its own jobs only;
an Idempotency-Key is the caller's own, and another body under it is a 409; a callback host on a
private address is refused naming the field; a caller's webhook endpoint that is down is sent
its webhook once it is back, once."""

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.serving import serving
from tests.support.apiframe_document import document_missing, fits
from tests.support.stack import BUCKET, CALLER_KEYS, Stack
from tests.support.waiting import eventually
from worker.apiframe.catalog import OPERATIONS
from worker.callers.jobs import ref_of

pytestmark = pytest.mark.skipif(document_missing() is not None, reason=document_missing() or "")

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c63f8cfc0f00f0004850180848a8c210000000049454e44ae426082"
)
# A body each route takes, as Apiframe's document describes it (action routes: see below).
BODIES: dict[str, dict[str, Any]] = {
    "images/generate": {"model": "midjourney", "prompt": "a fox"},
    "images/edit": {
        "model": "flux-fill-pro",
        "fluxFillParams": {
            "image": "https://example.com/a.png",
            "prompt": "sky",
            "mode": "inpaint",
            "mask": "https://example.com/m.png",
        },
    },
    "images/upscale": {
        "model": "topaz-image-upscale",
        "topazUpscaleParams": {"image": "https://example.com/a.png", "upscale_factor": 2},
    },
    "images/background-remove": {
        "model": "bria-bg-remove",
        "briaBgRemoveParams": {"image": "https://example.com/a.png"},
    },
    "videos/generate": {"model": "kling-3.0", "prompt": "a heron"},
    "videos/edit": {
        "model": "wan-2.7-videoedit",
        "prompt": "warmer",
        "wan27VideoeditParams": {"video": "https://example.com/a.mp4"},
    },
    "videos/upscale": {
        "model": "topaz-video-upscale",
        "topazVideoParams": {
            "video": "https://example.com/a.mp4",
            "target_resolution": "1080p",
            "target_fps": 30,
        },
    },
    "music/generate": {"model": "suno", "prompt": "a shanty"},
}


GROK = {"model": "grok-imagine-image", "prompt": "a fox"}


def client(stack: Stack, name: str | None = "alpha") -> httpx.AsyncClient:
    headers = {"X-API-Key": CALLER_KEYS[name]} if name else {}
    return httpx.AsyncClient(base_url=stack.receiver_url, headers=headers)


async def landed(stack: Stack, alpha: httpx.AsyncClient, path: str, body: dict[str, Any]) -> str:
    answer = await alpha.post(f"/v2/{path}", json=body)
    job_id: str = fits("POST", f"/v2/{path}", answer)["jobId"]
    await stack.run_worker()
    return job_id


async def test_every_job_route_answers_as_the_document_says(stack: Stack) -> None:
    """For each of the ten routes: 401 without a key, 400 with field details for a bad body,
    202 with a job id for a good one; the job then reads as the document's Job."""
    async with client(stack) as alpha, client(stack, None) as anonymous:
        grid = await landed(stack, alpha, "images/generate", BODIES["images/generate"])
        track = await landed(stack, alpha, "music/generate", BODIES["music/generate"])
        bodies = {
            **BODIES,
            "images/midjourney/action": {"action": "upsample", "parentJobId": grid, "index": 1},
            "music/suno/action": {"action": "extend", "parentJobId": track},
        }
        assert set(bodies) == set(OPERATIONS)
        for path, body in bodies.items():
            template = f"/v2/{path}"
            refused = fits("POST", template, await anonymous.post(template, json=body))
            assert refused["error"]
            bad = fits("POST", template, await alpha.post(template, json={**body, "seed": "x"}))
            assert bad["details"] == {"seed": ["Extra inputs are not permitted"]}, path
            accepted = fits("POST", template, await alpha.post(template, json=body))
            job = fits("GET", "/v2/jobs/{id}", await alpha.get(f"/v2/jobs/{accepted['jobId']}"))
            assert job["id"] == accepted["jobId"], path
            assert job["status"] in ("QUEUED", "PROCESSING"), path
        await stack.run_worker()
        listed = fits("GET", "/v2/jobs", await alpha.get("/v2/jobs", params={"limit": 100}))
        assert {job["status"] for job in listed["jobs"]} == {"COMPLETED"}
        assert len(listed["jobs"]) == len(bodies) + 2


async def test_reads_and_their_refusals_answer_as_the_document_says(stack: Stack) -> None:
    async with client(stack) as alpha, client(stack, None) as anonymous:
        job_id = await landed(stack, alpha, "images/generate", GROK)
        job = fits("GET", "/v2/jobs/{id}", await alpha.get(f"/v2/jobs/{job_id}"))
        assert job["status"] == "COMPLETED"
        assert job["result"]["images"]
        assert (
            job["creditCost"]
            == stack.sim.jobs[(await stack.job(uuid.UUID(job_id).hex))["jobId"]].credit_cost
        )
        for path, status in (
            ("/v2/jobs/not-a-uuid", 400),
            (f"/v2/jobs/{uuid.uuid4()}", 404),
        ):
            assert (await alpha.get(path)).status_code == status
            fits("GET", "/v2/jobs/{id}", await alpha.get(path))
        fits("GET", "/v2/jobs/{id}", await anonymous.get(f"/v2/jobs/{job_id}"))
        for query, status, field in (
            ({"status": "DONE"}, 400, "status"),
            ({"limit": "0"}, 400, "limit"),
            ({"search": "x"}, 400, "search"),
            ({"cursor": "x"}, 400, "cursor"),
            ({"scope": "team"}, 403, None),
        ):
            answer = await alpha.get("/v2/jobs", params=query)
            body = fits("GET", "/v2/jobs", answer)
            assert answer.status_code == status
            assert field is None or field in body["details"]
        found = fits("GET", "/v2/jobs", await alpha.get("/v2/jobs", params={"search": job_id}))
        assert [job["id"] for job in found["jobs"]] == [job_id]
        page = await alpha.get("/v2/jobs", params={"status": "COMPLETED", "include_models": "true"})
        assert fits("GET", "/v2/jobs", page)["models"] == ["grok-imagine-image"]
        fits("GET", "/v2/jobs", await anonymous.get("/v2/jobs"))

        me = fits("GET", "/v2/me", await alpha.get("/v2/me"))
        assert me["apiKey"]["name"] == "alpha"
        assert me["team"]["credits"] == stack.sim.config.credits
        assert CALLER_KEYS["alpha"] not in json.dumps(me)
        fits("GET", "/v2/me", await anonymous.get("/v2/me"))
        models = fits("GET", "/v2/models", await anonymous.get("/v2/models"))
        assert {"id": "kling-3.0", "label": "kling-3.0", "modality": "video"} in models["models"]
        music = await anonymous.get("/v2/models", params={"modality": "music"})
        assert {entry["modality"] for entry in fits("GET", "/v2/models", music)["models"]} == {
            "music"
        }
        fits("GET", "/v2/models", await anonymous.get("/v2/models", params={"modality": "3d"}))


async def test_uploads_land_in_the_bucket_and_answer_as_the_document_says(stack: Stack) -> None:
    async with client(stack) as alpha, client(stack, None) as anonymous:
        made = await alpha.post("/v2/uploads", files={"file": ("a.bin", PNG, "text/plain")})
        upload = fits("POST", "/v2/uploads", made)
        assert made.status_code == 201
        assert (upload["kind"], upload["contentType"], upload["byteSize"]) == (
            "image",
            "image/png",
            len(PNG),
        )
        assert (await alpha.get(upload["url"])).content == PNG
        key = f"apiframe/uploads/alpha/{upload['id']}.png"
        assert stack.object(key) == PNG
        for files, said in (
            ({"file": ("a.txt", b"just text", "image/png")}, "Unsupported file type"),
            ({"other": ("a.png", PNG, "image/png")}, "Required"),
        ):
            refused = fits("POST", "/v2/uploads", await alpha.post("/v2/uploads", files=files))
            assert said in refused["details"]["file"][0]
        fits("POST", "/v2/uploads", await anonymous.post("/v2/uploads", files={"file": PNG}))


async def test_a_large_upload_lands_in_parts_and_an_oversize_one_is_refused(stack: Stack) -> None:
    """A 12 MB video goes to the bucket as a multipart upload, a part at a time, and comes back
    byte for byte; an image over 25 MB is refused naming the file, and nothing is kept."""
    video = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(12 * 1000 * 1000)
    before = uploads_in(stack)
    async with client(stack) as alpha:
        made = fits("POST", "/v2/uploads", await alpha.post("/v2/uploads", files={"file": video}))
        assert (made["kind"], made["byteSize"]) == ("video", len(video))
        assert (await alpha.get(made["url"])).content == video
        oversize = PNG + bytes(25 * 1000 * 1000)
        refused = await alpha.post("/v2/uploads", files={"file": oversize})
    assert "at most 25 MB" in fits("POST", "/v2/uploads", refused)["details"]["file"][0]
    assert uploads_in(stack) - before == {f"apiframe/uploads/alpha/{made['id']}.mp4"}


def uploads_in(stack: Stack) -> set[str]:
    listed = stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="apiframe/uploads/")
    return {item["Key"] for item in listed.get("Contents", [])}


async def test_each_caller_sees_its_own_jobs_only(stack: Stack) -> None:
    """Another caller's job is a 404 to read and to act on, its list leaves it out, and the
    same Idempotency-Key is each caller's own."""
    async with client(stack) as alpha, client(stack, "beta") as beta:
        key = {"Idempotency-Key": "order-1"}
        mine = (
            await alpha.post("/v2/images/generate", json={**GROK, "prompt": "a"}, headers=key)
        ).json()
        theirs = (
            await beta.post("/v2/images/generate", json={**GROK, "prompt": "b"}, headers=key)
        ).json()
        assert mine["jobId"] != theirs["jobId"]
        await stack.run_worker()
        assert (await beta.get(f"/v2/jobs/{mine['jobId']}")).status_code == 404
        assert (await beta.get("/v2/jobs", params={"search": mine["jobId"]})).json()["jobs"] == []
        listed = (await beta.get("/v2/jobs")).json()["jobs"]
        assert [job["id"] for job in listed] == [theirs["jobId"]]
        act = {"action": "upsample", "parentJobId": mine["jobId"], "index": 1}
        refused = await beta.post("/v2/images/midjourney/action", json=act)
        assert refused.status_code == 400
        assert "parentJobId" in refused.json()["details"]
        # imagedock's own API, the operator's, shows both, each with its caller.
        jobs = (await stack.api.get("/jobs")).json()["jobs"]
        assert sorted(job["caller"] for job in jobs) == ["alpha", "beta"]
        seen = (await stack.api.get(f"/jobs/{mine['jobId']}")).json()  # by the id alpha knows
        assert (seen["ref"], seen["caller"]) == (uuid.UUID(mine["jobId"]).hex, "alpha")


async def test_an_idempotency_key_with_another_body_is_a_conflict(stack: Stack) -> None:
    async with client(stack) as alpha:
        key = {"Idempotency-Key": "render-7"}
        first = await alpha.post("/v2/images/generate", json={**GROK, "prompt": "a"}, headers=key)
        again = await alpha.post("/v2/images/generate", json={**GROK, "prompt": "a"}, headers=key)
        other = await alpha.post("/v2/images/generate", json={**GROK, "prompt": "b"}, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["jobId"] == again.json()["jobId"]
    assert other.status_code == 409
    assert set(other.json()) == {"error"}
    await stack.all_sent()
    assert len(stack.sim.submissions()) == 1


PRIVATE = ["http://10.1.2.3/hook", "http://localhost:9/hook", "http://169.254.169.254/latest"]


@pytest.mark.parametrize("url", [*PRIVATE, "ftp://example.com/hook"])
async def test_a_callback_host_on_a_private_address_is_refused(stack: Stack, url: str) -> None:
    async with client(stack) as alpha:
        refused = await alpha.post(
            "/v2/images/generate", json={**GROK, "prompt": "a fox", "webhookUrl": url}
        )
    body = fits("POST", "/v2/images/generate", refused)
    assert refused.status_code == 400
    assert list(body["details"]) == ["webhookUrl"]
    assert "127.0.0.1" not in refused.text  # what a name resolves to is not the caller's to learn
    assert stack.sim.submissions() == []


@asynccontextmanager
async def listener(statuses: list[int]) -> AsyncIterator[tuple[str, list[Request], list[bytes]]]:
    """A caller's webhook endpoint answering `statuses` in turn, then 204."""
    calls: list[Request] = []
    bodies: list[bytes] = []

    async def hook(request: Request) -> Response:
        calls.append(request)
        bodies.append(await request.body())
        return Response(status_code=statuses.pop(0) if statuses else 204)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with serving(app) as url:
        yield f"{url}/hook", calls, bodies


async def test_a_callers_webhook_endpoint_down_then_back_gets_it_once(stack: Stack) -> None:
    async with listener([503, 503]) as (url, calls, bodies), client(stack) as alpha:
        body = {**GROK, "prompt": "a fox", "webhookUrl": url, "webhookEvents": ["completed"]}
        job_id = (await alpha.post("/v2/images/generate", json=body)).json()["jobId"]
        await stack.run_worker()
        job = (await alpha.get(f"/v2/jobs/{job_id}")).json()
    assert len(calls) == 3  # two refused, the third delivered, nothing after
    assert job["webhookStatus"] == "delivered"
    secret = hashlib.sha256(CALLER_KEYS["alpha"].encode()).digest()
    for request, raw in zip(calls, bodies, strict=True):
        expected = "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()
        assert request.headers["x-webhook-signature"] == expected
        assert request.headers["x-webhook-event"] == "completed"
    delivered = json.loads(bodies[-1])
    assert (delivered["jobId"], delivered["status"]) == (job_id, "COMPLETED")
    assert set(delivered["result"]) == {"images"}
    # The operator's own sink had the event too, naming the caller.
    [event] = stack.delivered("job.landed")
    assert event["data"]["caller"] == "alpha"


async def test_a_request_apiframe_refuses_fails_the_callers_job_saying_why(
    stack: Stack,
) -> None:
    """The caller has its job at once; Apiframe's later refusal of the request (a 400) ends it
    FAILED with Apiframe's reason, in the job object and in the `failed` webhook it asked
    for. Apiframe's 402 and 429 never reach it: those only delay a job."""
    stack.sim.fail_next(400, path="/v2/images/generate")
    async with listener([]) as (url, calls, bodies), client(stack) as alpha:
        body = {**GROK, "prompt": "a fox", "webhookUrl": url}
        accepted = await alpha.post("/v2/images/generate", json=body)
        fits("POST", "/v2/images/generate", accepted)
        job_id = accepted.json()["jobId"]

        async def failed() -> bool:
            return bool((await alpha.get(f"/v2/jobs/{job_id}")).json()["status"] == "FAILED")

        await eventually(failed, "the job to fail", 10)
        job = fits("GET", "/v2/jobs/{id}", await alpha.get(f"/v2/jobs/{job_id}"))
        await stack.run_worker()
    assert accepted.status_code == 202
    assert "Injected status 400" in job["error"]
    [webhook] = [json.loads(body) for body in bodies]
    assert (webhook["event"], webhook["jobId"], webhook["status"]) == ("failed", job_id, "FAILED")
    assert "Injected status 400" in webhook["error"]
    assert len(calls) == 1


async def test_progress_webhooks_go_only_to_a_caller_that_asked(stack: Stack) -> None:
    """Asked for, the progress Apiframe reports reaches the caller, signed, before the job's
    `completed` (a progress arriving after the end is dropped: the end said more); the other
    caller's job, not asking, gets only its `completed`."""
    async with (
        listener([]) as (url, calls, bodies),
        client(stack) as alpha,
        client(stack, "beta") as beta,
    ):
        stack.sim.plan_next_job(processing_seconds=3.0)  # a progress a second
        asked = {
            **GROK,
            "prompt": "a",
            "webhookUrl": url,
            "webhookEvents": ["progress", "completed"],
        }
        watched = (await alpha.post("/v2/images/generate", json=asked)).json()["jobId"]
        await stack.submitted(uuid.UUID(watched).hex)  # the planned job is this one
        quiet = {**GROK, "prompt": "b", "webhookUrl": url, "webhookEvents": ["completed"]}
        other = (await beta.post("/v2/images/generate", json=quiet)).json()["jobId"]
        record = await stack.ledger.get(uuid.UUID(watched).hex)
        assert record is not None
        assert record.job_id is not None
        job_id = record.job_id

        async def progressed() -> bool:
            return bool(stack.sim.deliveries_for(job_id, "progress"))

        await eventually(progressed, "Apiframe's first progress webhook")
        await stack.run_worker(settle=False)  # the first progress, while the job runs
        await stack.run_worker()
    said = [json.loads(raw) for raw in bodies]
    mine = [(body["event"], body["progress"]) for body in said if body["jobId"] == watched]
    steps = stack.sim.config.progress_steps
    assert mine[0] == ("progress", 100 // (steps + 1))
    assert mine[-1] == ("completed", 100)
    assert all(event == "progress" and value < 100 for event, value in mine[:-1])
    assert [body["event"] for body in said if body["jobId"] == other] == ["completed"]
    assert [request.headers["x-webhook-event"] for request in calls] == [b["event"] for b in said]


async def test_a_job_is_completed_only_once_its_files_have_landed(stack: Stack) -> None:
    """Apiframe's job is COMPLETED and its webhook taken, but the files are not in the bucket
    yet: the caller sees PROCESSING, below 100, with no result; landed, COMPLETED with URLs of
    the bucket's objects, whose bytes are Apiframe's."""
    stack.sim.config.images_per_job = 2
    async with client(stack) as alpha:
        answer = await alpha.post("/v2/images/generate", json={**GROK, "prompt": "a fox"})
        job_id = answer.json()["jobId"]
        await stack.submitted(uuid.UUID(job_id).hex)
        await stack.sim.settle()
        record = await stack.ledger.get(uuid.UUID(job_id).hex)
        assert record is not None
        assert record.job_id is not None
        assert stack.sim.jobs[record.job_id].status == "COMPLETED"
        waiting = fits("GET", "/v2/jobs/{id}", await alpha.get(f"/v2/jobs/{job_id}"))
        assert (waiting["status"], waiting["result"], waiting["completedAt"]) == (
            "PROCESSING",
            None,
            None,
        )
        assert waiting["progress"] <= 99
        await stack.run_worker()
        landed = fits("GET", "/v2/jobs/{id}", await alpha.get(f"/v2/jobs/{job_id}"))
        assert (landed["status"], landed["progress"]) == ("COMPLETED", 100)
        served = [stack.sim.image(url).read() for url in stack.sim.jobs[record.job_id].image_urls]
        fetched = [(await alpha.get(url)).content for url in landed["result"]["images"]]
    assert fetched == served
    assert all(
        url.startswith(stack.settings.s3_endpoint_url or "") for url in landed["result"]["images"]
    )


async def test_a_keyed_request_sent_twice_at_once_is_one_job(stack: Stack) -> None:
    """A client resending its keyed request at once gets the same job: one submit."""
    key = {"Idempotency-Key": "resent-1"}
    async with client(stack) as alpha:
        first, second = await asyncio.gather(
            *(alpha.post("/v2/images/generate", json=GROK, headers=key) for _ in "ab")
        )
    assert first.status_code == second.status_code == 202
    assert first.json()["jobId"] == second.json()["jobId"]
    await stack.submitted(ref_of(first.json()["jobId"]) or "")
    assert len(stack.sim.submissions()) == 1
