"""The ops commands, run as a person runs them: a process of their own against the stack."""

import asyncio
import json
import signal
import socket
import subprocess
import sys

from simulator.local_s3 import LocalS3
from tests.support.processes import env_of, running
from tests.support.stack import Sink, Stack, stack_on
from worker.apiframe import ApiframeRequest
from worker.runtime.heartbeat import beat


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
    assert (answer["status"], answer["jobId"]) == ("QUEUED", None)
    assert "job.queued" in done.stderr
    job = await stack.job(answer["ref"])
    assert (job["params"], job["metadata"]) == ({"aspect_ratio": "9:16"}, {"team": "ops"})


async def test_status_shows_the_queue_and_cancel_ends_a_waiting_job(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> None:
    """With no dispatcher running, `imagedock status` shows the job waiting under its caller;
    `imagedock cancel` ends it, and says why it cannot cancel it again."""
    async with stack_on(redis_url, s3_server, sink, dispatching=False) as stack:
        ref = (await stack.accept("a tide pool"))["ref"]
        shown = await imagedock(stack, "status", "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["waiting"] == {"operator": 1}
        cancelled = await imagedock(stack, "cancel", ref)
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"cancelled {ref}" in cancelled.stdout
        again = await imagedock(stack, "cancel", ref)
        assert again.returncode == 1
        assert "CANCELLED" in again.stdout
        assert (await stack.job(ref))["status"] == "CANCELLED"
        assert stack.sim.submissions() == []


async def test_track_replay_and_redrive(stack: Stack) -> None:
    """A job submitted elsewhere is tracked once; replay and redrive say what they queued."""
    foreign = (await stack.deps.apiframe.submit(ApiframeRequest(prompt="elsewhere"))).job_id
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
    no_worker = await imagedock(stack, "check")
    assert no_worker.returncode == 1
    assert "no worker has sent a heartbeat" in no_worker.stdout
    await beat(stack.redis, "elsewhere:7")
    healthy = await imagedock(stack, "check")
    assert healthy.returncode == 0, healthy.stdout
    for part in ("Redis", "Apiframe", "S3", "Receiver", "1 alive: elsewhere:7"):
        assert part in healthy.stdout
    no_bucket = await imagedock(stack, "check", IMAGEDOCK_S3_BUCKET="missing-bucket")
    assert no_bucket.returncode == 1
    assert "s3://missing-bucket" in no_bucket.stdout
    no_redis = await imagedock(stack, "check", IMAGEDOCK_REDIS_URL="redis://127.0.0.1:9/0")
    assert no_redis.returncode == 1
    assert "not checked without Redis" in no_redis.stdout


async def test_check_worker_follows_a_worker_process_on_this_host(stack: Stack) -> None:
    """`imagedock check --worker` passes while a worker process on this host beats, and fails
    once it has stopped (its beat withdrawn); a worker elsewhere does not count."""
    await beat(stack.redis, "another-host:1")
    before = await imagedock(stack, "check", "--worker")
    assert before.returncode == 1
    assert f"no worker on {socket.gethostname()}" in before.stdout
    command = [sys.executable, "-m", "imagedock", "worker"]
    with running(command, env_of(stack)) as worker:
        for _ in range(60):
            during = await imagedock(stack, "check", "--worker")
            if during.returncode == 0:
                break
            await asyncio.sleep(0.5)
        assert during.returncode == 0, during.stdout
        assert f"{socket.gethostname()}:{worker.pid}" in during.stdout
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
    after = await imagedock(stack, "check", "--worker")
    assert after.returncode == 1


async def test_jobs_status_and_tail_print_json_lines_when_piped(stack: Stack) -> None:
    """Piped (or with --json), `jobs` filters by status and model and prints one JSON object a
    line, `status` prints the record with its log, and `tail` prints log entries."""
    landed = (await stack.submit("a landed one"))["jobId"]
    await stack.run_worker()
    stack.sim.config.stall = True
    await stack.submit("a running one")
    listed = await imagedock(stack, "jobs", "--status", "landed")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["jobId"], row["status"]) for row in rows] == [(landed, "LANDED")]
    other_model = await imagedock(stack, "jobs", "--model", "flux-pro", "--json")
    assert other_model.stdout == ""
    shown = json.loads((await imagedock(stack, "status", landed, "--json")).stdout)
    assert shown["jobId"] == landed
    assert "job.landed" in [entry["event"] for entry in shown["log"]]
    tailed = await imagedock(stack, "tail", "-n", "5")
    entries = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert len(entries) == 5
    assert all(entry["id"] and entry["event"] for entry in entries)


async def test_submit_and_models_take_every_route(stack: Stack) -> None:
    """`--operation` submits to any route: a Midjourney grid, then its upsample naming the grid
    by ref; `models --operation` lists a route's models or actions; a bad one exits 2."""
    grid = await imagedock(stack, "submit", "a lantern", "--model", "midjourney")
    assert grid.returncode == 0, grid.stderr
    ref = json.loads(grid.stdout)["ref"]
    await stack.submitted(ref)
    await stack.run_worker()
    upsample = await imagedock(
        stack, "submit", "--operation", "images/midjourney/action", "--action", "upsample",
        "--params", '{"index": 3}', "--parent", ref,
    )  # fmt: skip
    assert upsample.returncode == 0, upsample.stderr
    job = await stack.job(json.loads(upsample.stdout)["ref"])
    assert (job["operation"], job["action"], job["params"]) == (
        "images/midjourney/action", "upsample", {"index": 3}
    )  # fmt: skip
    listed = await imagedock(stack, "models", "--operation", "videos/generate")
    assert "kling-3.0" in listed.stdout
    assert "flux-2-pro" not in listed.stdout
    wrong = await imagedock(stack, "submit", "a fox", "--operation", "videos/generate")
    assert wrong.returncode == 2
    assert "model" in wrong.stderr
