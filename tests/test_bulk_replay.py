"""Replaying or resubmitting every job a filter selects: counted first (a dry run does only
that), then done in the background, each resubmit a new job naming the old one, never twice."""

import asyncio
import json
import time

import pytest

from tests.support.stack import Stack
from tests.test_commands import imagedock
from worker import replays


async def finished(stack: Stack, bulk_id: str) -> dict[str, object]:
    """Run the worker until the bulk replay's tasks are through; its progress then."""
    await stack.run_worker(settle=False)
    answer: dict[str, object] = (await stack.api.get(f"/jobs/replay/{bulk_id}")).json()
    return answer


async def test_failed_jobs_are_resubmitted_once_each_naming_the_old(stack: Stack) -> None:
    """Three jobs Apiframe failed: a dry run counts them and makes nothing; the resubmit makes
    three new jobs, each naming its old one, which land; the same tasks run again (a worker
    that died) make none more; a second resubmit selects the same three and may run now."""
    since = time.time() - 1
    stack.sim.config.failure_rate = 1.0
    old = [(await stack.submit(f"mug {n}"))["ref"] for n in range(3)]
    await stack.run_worker()
    stack.sim.config.failure_rate = 0.0
    asked = {"status": "FAILED", "since": since, "resubmit": True}
    dry = await stack.api.post("/jobs/replay", json={**asked, "dryRun": True})
    assert dry.status_code == 200, dry.text
    assert (dry.json()["selected"], dry.json()["id"]) == (3, None)
    assert len((await stack.api.get("/jobs")).json()["jobs"]) == 3

    started = await stack.api.post("/jobs/replay", json=asked)
    assert started.status_code == 202, started.text
    bulk_id = started.json()["id"]
    keys_before = await stack.redis.dbsize()
    for _ in range(20):  # a thousand more while it runs: each refused, none kept
        answers = await asyncio.gather(
            *(stack.api.post("/jobs/replay", json=asked) for _ in range(50))
        )
        assert {answer.status_code for answer in answers} == {409}
    assert await stack.redis.dbsize() == keys_before
    progress = await finished(stack, bulk_id)
    assert (progress["finished"], progress["done"], progress["counts"]) == (
        True,
        3,
        {"resubmitted": 3},
    )
    await replays.work_through(stack.deps.submitting, bulk_id, 0)  # run again: nothing new
    await stack.run_worker()
    jobs = (await stack.api.get("/jobs")).json()["jobs"]
    made = [job for job in jobs if job.get("resubmittedFrom")]
    assert sorted(job["resubmittedFrom"] for job in made) == sorted(old)
    assert {job["status"] for job in made} == {"LANDED"}
    assert {job["prompt"] for job in made} == {f"mug {n}" for n in range(3)}
    assert "job.resubmitted" in await stack.log_events(old[0])
    again = await stack.api.post("/jobs/replay", json=asked)
    assert again.status_code == 202, again.text  # the first is finished: one may run again


async def test_a_replay_lands_and_delivers_again_and_a_filter_must_select(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Landed jobs replayed, a task a job: each is queued to land and deliver again, and its
    log says so. A filter that selects nothing, or a bad status, is a 400 naming the field."""
    monkeypatch.setattr(replays, "CHUNK", 1)  # each task queues the next
    since = time.time() - 1
    landed = [(await stack.submit(f"cap {n}"))["ref"] for n in range(2)]
    await stack.run_worker()
    started = await stack.api.post("/jobs/replay", json={"status": "LANDED", "since": since})
    assert started.status_code == 202, started.text
    progress = await finished(stack, started.json()["id"])
    assert progress["counts"] == {"replayed": 2}
    assert "job.replay_requested" in await stack.log_events(landed[1])

    for asked, field in (
        ({"status": "FAILED", "since": since}, "status"),
        ({"status": "LANDED", "since": since, "model": "flux-pro"}, "model"),
        ({"status": "DONE", "since": since}, "status"),
        ({"status": "LANDED"}, "since"),
        ({"status": "QUEUED", "since": since, "resubmit": True}, "status"),
    ):
        refused = await stack.api.post("/jobs/replay", json=asked)
        assert refused.status_code == 400, refused.text
        assert list(refused.json()["details"]) == [field], refused.json()
    assert (await stack.api.get("/jobs/replay/running")).status_code == 404


async def test_the_command_counts_then_starts(stack: Stack) -> None:
    """`imagedock replay --dry-run` prints the count and starts nothing; without it, the bulk
    replay starts and `--no-wait` prints it at once, the worker doing the rest; a filter with
    no job exits 2 naming the option."""
    stack.sim.config.failure_rate = 1.0
    await stack.submit("plate")
    await stack.run_worker()
    stack.sim.config.failure_rate = 0.0
    failed = ("replay", "--status", "failed", "--since", "1h", "--resubmit")
    dry = await imagedock(stack, *failed, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["selected"] == 1
    started = await imagedock(stack, *failed, "--no-wait")
    assert started.returncode == 0, started.stderr
    bulk_id = json.loads(started.stdout)["id"]
    assert (await finished(stack, bulk_id))["counts"] == {"resubmitted": 1}
    none = await imagedock(stack, "replay", "--status", "landed", "--since", "1h")
    assert none.returncode == 2
    assert "--status" in none.stderr
