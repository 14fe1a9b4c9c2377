"""Redis stopped and started again under imagedock, on a redis-server of the test's own: a
worker process waits the outage out and every job still lands once, the supervisor tells an
outage from a bug, and the API and webhook answer 503 while Redis is away."""

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from simulator.local_s3 import LocalS3
from tests.support.processes import HEALTH_KEYS, logged, still_running, worker_process
from tests.support.redis_server import PrivateRedis
from tests.support.stack import Sink, Stack, stack_on
from tests.support.waiting import eventually
from tests.support.webhooks import HOOK, signed
from tests.support.workers import failing_worker
from worker.ledger.keys import EVENTS, POLL_SET
from worker.runtime.runner import keep_running, supervise
from worker.sinks.body import event_id


async def streamed_event_ids(stack: Stack) -> list[str]:
    """The ids of the events published to the Redis stream, one entry per publication."""
    found = await stack.redis.xrange(EVENTS)
    return sorted(fields[b"id"].decode() for _, fields in found)


def cut_short(lines: list[dict[str, Any]], job_id: str) -> bool:
    """arq's line for a landing of `job_id` that ended in an exception."""
    return any(f"land:{job_id}:land failed" in str(line.get("event")) for line in lines)


def ended(lines: list[dict[str, Any]], job_id: str) -> bool:
    """arq's line for a landing of `job_id` that ended: failed, done, or to be retried (the
    line that starts one reads `land:<id>:land(...)`)."""
    return any(f"land:{job_id}:land " in str(line.get("event")) for line in lines)


async def test_redis_restarted_mid_run_loses_no_job_and_lands_each_once(
    private_redis: PrivateRedis, s3_server: LocalS3, sink: Sink, tmp_path: Path
) -> None:
    """Redis stopped with landings half done and webhooks coming, then started again on its
    append-only file: the worker process waits it out, and every job lands once, with one set
    of objects, one job.landed and one event id; a submit refused in the outage, repeated
    with its Idempotency-Key, bills one job."""
    output = tmp_path / "worker.log"
    async with stack_on(
        private_redis.url, s3_server, sink, poll_after=10.0, landing_timeout=4.0
    ) as stack:
        with worker_process(stack, output) as worker:

            async def workers_up() -> bool:
                return bool(await stack.redis.exists(*HEALTH_KEYS) == 2)

            await eventually(workers_up, "both arq workers")
            # Two jobs whose landings are half done when Redis stops: two slow images each.
            landing = []
            for n in range(2):
                stack.sim.plan_next_job(images_per_job=2, image_bytes=300_000, cdn_chunk_delay=0.2)
                landing.append((await stack.submit(f"landing {n}"))["jobId"])
            # Two jobs whose webhooks never come: only the poller can find them finished.
            lost = []
            for n in range(2):
                stack.sim.plan_next_job(drop_rate=1.0)
                lost.append(await stack.submit(f"lost {n}"))
            await stack.sim.settle()

            async def first_image_stored() -> bool:
                logs = [await stack.log_events(job_id) for job_id in landing]
                return all("image.stored" in events for events in logs)

            await eventually(first_image_stored, "the first image of each landing")
            # No poll is due yet, so none is under way: a poll cut short by the outage would
            # leave its jobs leased to it for two minutes, longer than this test waits.
            polls = await stack.redis.zrange(POLL_SET, 0, -1, withscores=True)
            assert min(due for _, due in polls) > time.time()
            private_redis.stop()

            # What arrives while Redis is down is not taken: Apiframe's webhook and a
            # caller's submit are answered with a server error, to be sent again.
            job = stack.sim.jobs[lost[0]["jobId"]]
            completed = {"jobId": job.id, "status": "COMPLETED"}
            body, headers = signed({**completed, "result": {"images": job.image_urls}})
            params = {"ref": lost[0]["ref"]}
            hook = await stack.api.post(HOOK, content=body, headers=headers, params=params)
            again = {"Idempotency-Key": "in-the-outage"}
            refused = await stack.api.post("/jobs", json={"prompt": "p"}, headers=again)
            assert hook.status_code >= 500, hook.text
            assert refused.status_code >= 500, refused.text
            assert (await stack.api.get("/healthz")).status_code == 200

            async def outage_felt() -> bool:
                still_running(worker, output)
                lines = logged(output)
                lost_by = {
                    line.get("worker") for line in lines if line.get("event") == "worker.redis_lost"
                }
                # Each half-done landing has ended: cut short by the outage, or before it.
                settled = all(ended(lines, j) for j in landing)
                return lost_by == {"landing", "polling", "submitting"} and settled

            await eventually(outage_felt, "the worker to meet the outage", deadline=30)
            assert any(cut_short(logged(output), job_id) for job_id in landing)
            still_running(worker, output)  # it waits for Redis; it does not exit
            private_redis.start()

            retried = await stack.api.post("/jobs", json={"prompt": "p"}, headers=again)
            assert retried.status_code == 202, retried.text
            after = (await stack.submit("after the restart"))["jobId"]
            every = [
                *landing,
                *(answer["jobId"] for answer in lost),
                (await stack.submitted(retried.json()["ref"]))["jobId"],
                after,
            ]

            async def all_landed() -> bool:
                statuses = [(await stack.job(job_id))["status"] for job_id in every]
                return statuses == ["LANDED"] * len(every)

            await eventually(all_landed, "every job to land", deadline=90)
            expected = sorted(event_id(job_id, "job.landed") for job_id in every)

            async def all_delivered() -> bool:
                delivered = {e["id"] for e in stack.delivered("job.landed")}
                return delivered == set(expected)

            await eventually(all_delivered, "every job.landed delivered")
            still_running(worker, output)

        for job_id in every:
            images = 2 if job_id in landing else 1
            events = await stack.log_events(job_id)
            assert events.count("job.landed") == 1, (job_id, events)
            # Once each: an object is recorded and logged in one transaction.
            assert events.count("image.stored") == images, (job_id, events)
            assert len(stack.keys(job_id)) == images + 1  # and the manifest
            objects = (await stack.job(job_id))["objects"]
            assert sorted(stored["index"] for stored in objects) == list(range(1, images + 1))
            for stored in objects:
                assert stack.object(stored["key"]) == stack.sim.image(stored["sourceUrl"]).read()
        for answer in lost:
            assert "webhook.missed" in await stack.log_events(answer["jobId"])
        # One publication per job, and every delivery of it under that one id.
        assert await streamed_event_ids(stack) == expected
        assert {e["id"] for e in stack.delivered()} == set(expected)
        assert len(stack.sim.jobs) == len(every)  # the refused submit billed once, after


async def test_a_worker_failing_while_redis_answers_ends_the_process(
    private_redis: PrivateRedis,
) -> None:
    with capture_logs() as logs:
        async with failing_worker(private_redis.url, lambda: None) as build:
            exit_code = await supervise({"landing": build})
    assert exit_code == 1
    died = [line for line in logs if line["event"] == "worker.died"]
    assert "a bug" in died[0]["error"]


async def test_a_worker_failing_in_a_redis_outage_waits_for_redis(
    private_redis: PrivateRedis,
) -> None:
    """Whatever error ends a worker while Redis does not answer is the outage's: the worker is
    started again once Redis is back, and the process stays up."""
    with capture_logs() as logs:
        async with failing_worker(private_redis.url, private_redis.stop) as build:
            running = asyncio.create_task(supervise({"landing": build}, restart_pause=0.05))

            async def restarted() -> bool:
                return any(line["event"] == "worker.redis_lost" for line in logs)

            await eventually(restarted, "the worker to wait for Redis")
            os.kill(os.getpid(), signal.SIGTERM)  # supervise's own handler takes it
            assert await running == 0
    lost = next(line for line in logs if line["event"] == "worker.redis_lost")
    assert "a bug" in lost["error"]
    assert not any(line["event"] == "worker.died" for line in logs)


async def test_a_worker_task_cancelled_in_a_redis_outage_ends(
    private_redis: PrivateRedis,
) -> None:
    """A cancellation of the supervising task itself (the loop closing) is obeyed, not taken
    for the outage's doing."""
    hanging = asyncio.Event()

    def fault() -> None:
        private_redis.stop()
        hanging.set()

    async with failing_worker(private_redis.url, fault, hang=True) as build:
        running = asyncio.create_task(keep_running("landing", build, {}, asyncio.Event(), 0.05))
        await asyncio.wait_for(hanging.wait(), 30)
        running.cancel()
        done, _ = await asyncio.wait({running}, timeout=15)
        assert running in done, "the cancelled task went on restarting the worker"
        assert running.cancelled()


async def test_a_redis_outage_is_answered_503_with_an_error(
    private_redis: PrivateRedis, s3_server: LocalS3, sink: Sink
) -> None:
    """With Redis down, the API and the webhook answer 503 with a JSON `error` (a submit also
    with Retry-After), as for any outage the caller should wait out, not a bare 500."""
    async with stack_on(private_redis.url, s3_server, sink) as stack:
        job_id = (await stack.submit())["jobId"]
        private_redis.stop()
        body, headers = signed({"jobId": job_id, "status": "COMPLETED"})
        answers = {
            "submit": await stack.api.post("/jobs", json={"prompt": "p"}),
            "job": await stack.api.get(f"/jobs/{job_id}"),
            "webhook": await stack.api.post(HOOK, content=body, headers=headers),
        }
        assert (await stack.api.get("/healthz")).status_code == 200
        private_redis.start()
    for name, answer in answers.items():
        assert answer.status_code == 503, (name, answer.status_code, answer.text)
        assert answer.headers["content-type"] == "application/json", name
        assert "redis" in answer.json()["error"].lower(), name
    assert int(answers["submit"].headers["retry-after"]) > 0
