"""The ops commands, run as a person runs them: a process of their own against the stack."""

import asyncio
import json
import os
import subprocess
import sys
import uuid

from simulator.local_s3 import ACCESS_KEY, SECRET_KEY
from tests.conftest import API_KEY, Stack


def env_of(stack: Stack, **changes: str) -> dict[str, str]:
    """The stack's settings as the environment variables a deployment would set."""
    settings = stack.settings
    return {
        **os.environ,
        "COLUMNS": "200",
        "IMAGEDOCK_REDIS_URL": settings.redis_url,
        "IMAGEDOCK_APIFRAME_URL": settings.apiframe_url,
        "IMAGEDOCK_APIFRAME_KEY": API_KEY,
        "IMAGEDOCK_PUBLIC_URL": settings.public_url,
        "IMAGEDOCK_S3_BUCKET": settings.s3_bucket or "",
        "IMAGEDOCK_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "IMAGEDOCK_S3_REGION": "us-east-1",
        "IMAGEDOCK_S3_ADDRESSING_STYLE": "path",
        "IMAGEDOCK_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "IMAGEDOCK_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        **changes,
    }


async def imagedock(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "imagedock", *args],
        env=env_of(stack, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_submit_prints_only_the_job_and_records_it(stack: Stack) -> None:
    """`imagedock submit` prints one JSON object on stdout (its logs go to stderr) and the job
    is recorded with its params and metadata."""
    done = await imagedock(
        stack, "submit", "a tide pool", "--aspect-ratio", "9:16", "--metadata", "team=ops"
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "QUEUED"
    assert "job.submitted" in done.stderr
    job = await stack.job(answer["jobId"])
    assert (job["params"], job["metadata"]) == ({"aspect_ratio": "9:16"}, {"team": "ops"})


async def test_submit_says_why_apiframe_refused(stack: Stack) -> None:
    """A refused submit exits 1 naming Apiframe's answer."""
    stack.sim.fail_next(402, path="/v2/images/generate")
    done = await imagedock(stack, "submit", "a tide pool")
    assert done.returncode == 1
    assert "402" in done.stdout


async def test_track_replay_and_redrive(stack: Stack) -> None:
    """A job submitted elsewhere is tracked once; replay and redrive say what they queued."""
    foreign = str(uuid.uuid4())
    tracked = await imagedock(stack, "track", foreign)
    assert tracked.returncode == 0, tracked.stderr
    assert f"tracking {foreign}" in tracked.stdout
    again = await imagedock(stack, "track", foreign)
    assert f"already known as {foreign}" in again.stdout

    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    replayed = await imagedock(stack, "replay", job_id)
    assert f"replay of {job_id} queued" in replayed.stdout
    unknown = await imagedock(stack, "replay", "nope")
    assert unknown.returncode == 1
    redriven = await imagedock(stack, "redrive")
    assert "0 dead letters" in redriven.stdout


async def test_check_names_every_part(stack: Stack) -> None:
    """`imagedock check` passes with everything up, and names the part that is not."""
    healthy = await imagedock(stack, "check")
    assert healthy.returncode == 0, healthy.stdout
    for part in ("Redis", "Apiframe", "S3", "Receiver"):
        assert part in healthy.stdout
    no_bucket = await imagedock(stack, "check", IMAGEDOCK_S3_BUCKET="missing-bucket")
    assert no_bucket.returncode == 1
    assert "s3://missing-bucket" in no_bucket.stdout
    no_redis = await imagedock(stack, "check", IMAGEDOCK_REDIS_URL="redis://127.0.0.1:9/0")
    assert no_redis.returncode == 1
    assert "not checked without Redis" in no_redis.stdout


async def test_the_demo_lands_its_jobs(stack: Stack) -> None:
    """`imagedock demo` runs the whole service on loopback and every job lands."""
    done = await imagedock(stack, "demo", "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 of 2 jobs landed in S3" in done.stdout
