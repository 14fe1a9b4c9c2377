"""A worker stopped at any instant of a job leaves no claim behind and runs nothing past its
stop: the job is either done or queued for the next worker at once.

Each test runs one short job (a landing of a job the ledger does not know) in a worker with a
Redis pool of its own, interrupted after 0, 1, 2, ... turns of the event loop until the job
finishes first, and reads Redis as soon as the worker is released, blocking the loop so that
nothing the release left running can catch up."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import redis as sync_redis
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.worker import func

from tests.support.stack import Stack
from worker.ledger.keys import LANDING_QUEUE
from worker.runtime.arq_worker import StoppableWorker
from worker.runtime.cancelling import cancel_until_done
from worker.runtime.queue import connect, deserialize, enqueue_landing, landing_id, serialize
from worker.runtime.tasks import build_worker

# Interrupts the worker's start of `job` after `turns` loop turns; True once the job was done
# before the interruption came.
Interrupt = Callable[[StoppableWorker, str, int], Awaitable[bool]]


async def interrupted_at_every_turn(stack: Stack, interrupt: Interrupt) -> AsyncIterator[bool]:
    """For each number of turns, whether the job was queued still (True) or done (False)."""
    with sync_redis.Redis.from_url(stack.settings.redis_url) as now:
        for turns in range(2000):
            job, redis = landing_id(f"job-{turns}"), await connect(stack.settings.redis_url)
            deps = dataclasses.replace(stack.deps, redis=redis)
            worker = build_worker(deps, handle_signals=False)
            await enqueue_landing(redis, f"job-{turns}")
            finished_first = await interrupt(worker, job, turns)
            await worker.release()
            claim_left = now.exists(in_progress_key_prefix + job)
            queued = now.zscore(LANDING_QUEUE, job) is not None
            stored = bool(now.exists(job_key_prefix + job))
            await redis.aclose(close_connection_pool=True)
            assert not claim_left, f"claim left when interrupted after {turns} turns"
            assert queued == stored, f"half finished when interrupted after {turns} turns"
            yield queued
            if finished_first:
                return
    raise AssertionError("the job never finished: interrupted at too few instants")


async def test_a_job_cancelled_at_any_instant_leaves_no_claim(stack: Stack) -> None:
    async def cancel(worker: StoppableWorker, job: str, turns: int) -> bool:
        await worker.start_jobs([job.encode()])
        task = worker.tasks[job]
        for _ in range(turns):
            await asyncio.sleep(0)
        return not task.cancel()

    outcomes = [queued async for queued in interrupted_at_every_turn(stack, cancel)]
    assert outcomes.count(True) > 5  # cancelled at many instants before the end


async def test_a_stop_while_claiming_runs_no_job_it_did_not_wait_for(stack: Stack) -> None:
    """Stopped with no wait while the worker's loop claims the job (so the stop cancels the
    loop mid-claim): a job whose task did not exist yet when the stop came never runs."""
    not_started: list[bool] = []

    async def stop(worker: StoppableWorker, job: str, turns: int) -> bool:
        worker.main_task = claiming = asyncio.create_task(worker.start_jobs([job.encode()]))
        for _ in range(turns):
            await asyncio.sleep(0)
        task = worker.tasks.get(job)
        not_started.append(task is None)
        await worker.stop(wait=0)
        await asyncio.gather(claiming, return_exceptions=True)
        return task is not None and task.done() and not task.cancelled()

    outcomes = [queued async for queued in interrupted_at_every_turn(stack, stop)]
    never_ran = [queued for queued, fresh in zip(outcomes, not_started, strict=True) if fresh]
    assert len(never_ran) > 3  # stopped at several instants before the job's task existed
    assert all(never_ran), "a job started after the stop ran"


async def test_claims_are_renewed_until_every_job_has_ended(stack: Stack) -> None:
    """arq's loop dies (a lost Redis) while a job runs: its claim is renewed for as long as
    `release` waits for the job, so no other worker takes it up meanwhile."""
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow(ctx: dict[str, object]) -> None:
        started.set()
        await finish.wait()

    worker = StoppableWorker(
        functions=[func(slow, name="slow")],
        redis_pool=stack.redis,
        queue_name="imagedock:test:claims",
        handle_signals=False,
        poll_delay=0.01,
        job_serializer=serialize,
        job_deserializer=deserialize,
        claim=1.5,
    )
    await stack.redis.enqueue_job("slow", _job_id="slow-1", _queue_name="imagedock:test:claims")
    loop = asyncio.create_task(worker.main())
    await asyncio.wait_for(started.wait(), 10)
    await cancel_until_done([loop])  # as a lost connection ends arq's loop
    releasing = asyncio.create_task(worker.release())
    await asyncio.sleep(4.0)  # well past the claim: only renewing (every 0.5 s) keeps it
    assert await stack.redis.exists(in_progress_key_prefix + "slow-1")
    finish.set()
    await releasing
