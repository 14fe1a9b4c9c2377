"""Apiframe's clients, unchanged but for their base URL and key, against imagedock over the
simulator, with a real worker process landing what they submit.

- Apiframe's first-party Node SDK: an upload as a Grok reference image, an image, a video and a
  track, each waited for with `jobs.waitFor`, listed with `jobs.list`, and announced by a webhook
  the SDK's own `verifyWebhook` accepts.
- Python `requests`, as Apiframe's product page's quick start calls the API.

Every result URL fetches the exact bytes the simulator served."""

import asyncio
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.serving import serving
from tests.support.apiframe_document import SDK
from tests.support.processes import worker_process
from tests.support.stack import CALLER_KEYS, Stack

CLIENT = Path(__file__).parent / "support" / "sdk_client.mjs"
MODELS = {"video": "kling-3.0", "music": "suno"}


def sdk_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed: the SDK test needs Node.js 18 or later"
    if not (SDK / "dist" / "index.js").is_file():
        return f"Apiframe's SDK build is not at {SDK} (see its SOURCE)"
    return None


async def run_sdk(stack: Stack) -> dict[str, Any]:
    env = {
        **os.environ,
        "APIFRAME_SDK": str(SDK),
        "BASE_URL": stack.receiver_url,
        "API_KEY": CALLER_KEYS["alpha"],
        "MODELS": json.dumps(MODELS),
    }
    process = await asyncio.create_subprocess_exec(
        "node", str(CLIENT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode == 0, err.decode()[-3000:]
    found: dict[str, Any] = json.loads(out)
    return found


def urls_in(result: dict[str, Any]) -> list[str]:
    found = [*result.get("images", []), *filter(None, [result.get("videoUrl")])]
    for track in result.get("tracks", []):
        found += [track["audioUrl"], *filter(None, [track.get("imageUrl")])]
    return found


@pytest.mark.skipif(sdk_missing() is not None, reason=sdk_missing() or "")
async def test_apiframes_own_sdk_works_against_imagedock_unchanged(
    stack: Stack, tmp_path: Path
) -> None:
    stack.sim.config.video_bytes = 256 * 1024
    with worker_process(stack, tmp_path / "worker.log"):
        seen = await run_sdk(stack)

    assert seen["upload"]["kind"] == "image"
    assert seen["again"]["jobId"] == seen["submitted"][0]["jobId"]  # the same key: one job
    ids = [accepted["jobId"] for accepted in seen["submitted"]]
    assert [job["id"] for job in seen["finished"]] == ids
    assert {job["id"] for job in seen["listed"]["jobs"]} == set(ids)
    async with httpx.AsyncClient() as http:
        for job in seen["finished"]:
            assert (job["status"], job["progress"], job["expired"]) == ("COMPLETED", 100, False)
            record = await stack.ledger.get(uuid.UUID(job["id"]).hex)
            assert record is not None
            served = {
                hashlib.sha256(stack.sim.image(stored.source_url).read()).hexdigest()
                for stored in record.objects
            }
            fetched = set()
            for url in urls_in(job["result"]):
                answer = await http.get(url)
                assert answer.status_code == 200
                fetched.add(hashlib.sha256(answer.content).hexdigest())
            assert fetched == served
            assert len(served) == len(record.objects) > 0
    image, video, track = seen["finished"]
    assert "images" in image["result"]
    assert "videoUrl" in video["result"]
    # Each track as Apiframe described it, its files the bucket's.
    record = await stack.ledger.get(uuid.UUID(track["id"]).hex)
    assert record is not None
    assert record.job_id is not None
    upstream = stack.sim.jobs[record.job_id].outputs or {}
    described = ("id", "title", "tags", "duration")
    assert [{k: t[k] for k in described} for t in track["result"]["tracks"]] == [
        {k: t[k] for k in described} for t in upstream["tracks"]
    ]
    # The Grok job was sent the uploaded reference as a URL Apiframe can fetch.
    [sent] = [s for s in stack.sim.submissions() if s.path == "/v2/images/generate"]
    assert json.loads(sent.body)["grokImagineParams"]["image"] == seen["upload"]["url"]

    hooks = seen["webhooks"]
    assert all(hook["verified"] for hook in hooks)
    completed = {
        hook["body"]["jobId"]: hook["body"] for hook in hooks if hook["event"] == "completed"
    }
    assert set(completed) == set(ids)
    for job in seen["finished"]:
        body = completed[job["id"]]
        assert (body["event"], body["status"], body["model"]) == (
            "completed",
            "COMPLETED",
            job["model"],
        )
        assert set(urls_in(body["result"]))
        assert len(urls_in(body["result"])) == len(urls_in(job["result"]))


def quick_start(base_url: str, api_key: str, webhook_url: str) -> dict[str, Any]:
    """Apiframe's product page's quick start for Grok Imagine, with imagedock's URL and a
    caller key: submit, then poll the job until it finishes."""
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    body: dict[str, Any] = {
        "model": "grok-imagine-image",
        "prompt": "a paper boat on a puddle, macro",
        "grokParams": {"aspect_ratio": "16:9"},
        "webhook_url": webhook_url,
    }
    submitted = requests.post(
        f"{base_url}/v2/images/generate", json=body, headers=headers, timeout=30
    )
    submitted.raise_for_status()
    job_id = submitted.json()["jobId"]
    for _ in range(600):
        job: dict[str, Any] = requests.get(
            f"{base_url}/v2/jobs/{job_id}", headers=headers, timeout=30
        ).json()
        if job["status"] in ("COMPLETED", "FAILED"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def download(urls: list[str]) -> list[bytes]:
    return [requests.get(url, timeout=30).content for url in urls]


async def test_the_product_pages_quick_start_works_against_imagedock(
    stack: Stack, tmp_path: Path
) -> None:
    stack.sim.config.images_per_job = 2
    hooks: list[tuple[str, bytes]] = []

    async def hook(request: Request) -> Response:
        hooks.append((request.headers["x-webhook-event"], await request.body()))
        return Response(status_code=204)

    listener = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with serving(listener) as hook_url:
        with worker_process(stack, tmp_path / "worker.log"):
            job = await asyncio.to_thread(
                quick_start, stack.receiver_url, CALLER_KEYS["beta"], f"{hook_url}/hook"
            )
            for _ in range(100):
                if any(event == "completed" for event, _ in hooks):
                    break
                await asyncio.sleep(0.1)

    assert job["status"] == "COMPLETED"
    record = await stack.ledger.get(uuid.UUID(job["id"]).hex)
    assert record is not None
    assert record.caller == "beta"
    served = [stack.sim.image(stored.source_url).read() for stored in record.objects]
    fetched = await asyncio.to_thread(download, job["result"]["images"])
    assert fetched == served
    assert len(served) == 2
    # No `webhookEvents`: all three, as Apiframe's default is; progress first, then the end.
    events = [event for event, _ in hooks]
    assert events[-1] == "completed"
    assert set(events[:-1]) <= {"progress"}
    assert json.loads(hooks[-1][1])["jobId"] == job["id"]
