"""Apiframe's first-party Node SDK, unchanged but for its base URL and key, against imagedock
over the simulator: an upload as a Grok reference image, an image, a video and a track, each
waited for with `jobs.waitFor`, listed with `jobs.list`, and announced by a webhook the SDK's own
`verifyWebhook` accepts; every result URL fetches the exact bytes the simulator served."""

import asyncio
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT
from tests.support.processes import worker_process
from tests.support.stack import CALLER_KEYS, Stack

SDK = ROOT.parent / "shared" / "apiframe-sdk"
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
    assert track["result"]["tracks"][0]["audioUrl"]
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
