"""End to end: from a webhook's arrival to its job's `job.landed` log entry, less the landing's
own time (`landing_ms`: downloads, S3 writes, manifest, the LANDED move), over 1,000 small jobs;
against arq's floor, the time from an enqueue to a no-op job starting in a bare arq worker with
the same queue settings.

Webhooks are sent at a steady 20 a second (each on its own schedule, not waiting for the last
answer), so the figure is the pipeline's latency, not a queue's backlog. The job log gives each
job's `webhook.accepted` and `job.landed` entries (with `landing_ms`); the arrival is the moment
the benchmark sent the webhook, on the same clock.

`python -m benchmarks.end_to_end [--out FILE] [--quick]`
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from arq.connections import ArqRedis

from benchmarks import arq_floor
from benchmarks.processes import PYTHON, start, stop
from benchmarks.results import Row, begin, median, ratio, say, table
from benchmarks.stack import Landable, Stack, send_webhook, stack, submitted, webhook_client, worker
from worker.ledger.ledger import Ledger
from worker.ledger.records import text
from worker.runtime.queue import connect
from worker.runtime.tasks import LANDING_POLL_DELAY

JOBS = 1000
BLOCKS = 4
RATE = 20.0  # webhooks (or enqueues) a second; at 50 a worker on a busy 2-core machine fell behind
WARMUP = 20


@dataclass(frozen=True)
class Timing:
    total: float  # webhook sent -> job.landed logged, less landing_ms (seconds)
    intake: float  # webhook sent -> webhook.accepted logged
    landing: float  # landing_ms


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def paced(count: int, send: Callable[[int], Awaitable[float]]) -> list[float]:
    """Start `send(n)` at `RATE` a second on a fixed schedule; the times each was sent."""
    started = time.monotonic()
    tasks = []
    for n in range(count):
        await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
        tasks.append(asyncio.ensure_future(send(n)))
    return list(await asyncio.gather(*tasks))


async def imagedock_block(found: Stack, jobs: list[Landable]) -> list[Timing]:
    redis = await connect(found.redis_url)
    ledger = Ledger(redis)
    try:
        async with webhook_client(found) as client:
            sent = await paced(len(jobs), lambda n: send_webhook(client, jobs[n]))
        timings = []
        for job, at in zip(jobs, sent, strict=True):
            timings.append(await timing(ledger, job, at))
        return timings
    finally:
        await redis.aclose()


async def timing(ledger: Ledger, job: Landable, sent: float, within: float = 60.0) -> Timing:
    deadline = time.monotonic() + within
    while True:
        entries = {entry.event: entry for entry in await ledger.history.job(job.ref)}
        if "job.landed" in entries:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job.job_id} did not land within {within:g} s")
        await asyncio.sleep(0.05)
    landed, accepted = entries["job.landed"], entries["webhook.accepted"]
    landing = float(landed.detail["landing_ms"]) / 1000
    return Timing(landed.ts - sent - landing, accepted.ts - sent, landing)


async def floor_block(redis_url: str, count: int, block: int) -> list[float]:
    redis: ArqRedis = await connect(redis_url)
    try:

        async def enqueue(n: int) -> float:
            sent = time.time()
            await redis.enqueue_job(
                "record", _job_id=f"floor:{block}:{n}", _queue_name=arq_floor.QUEUE
            )
            return sent

        sent = await paced(count, enqueue)
        deadline = time.monotonic() + 60
        while await redis.hlen(arq_floor.STARTED) < count:  # type: ignore[misc]
            if time.monotonic() > deadline:
                raise RuntimeError("the bare arq worker did not run every job")
            await asyncio.sleep(0.05)
        started = await redis.hgetall(arq_floor.STARTED)  # type: ignore[misc]
        await redis.delete(arq_floor.STARTED)
        return [
            float(text(started[f"floor:{block}:{n}".encode()]) or 0) - at
            for n, at in enumerate(sent)
        ]
    finally:
        await redis.aclose()


def main() -> None:
    args, result = begin("end_to_end", "End to end")
    jobs_count = 200 if args.quick else JOBS
    ours: list[Timing] = []
    floor: list[float] = []
    with stack() as found:
        say(f"end to end: {jobs_count} jobs")
        warmup, jobs = (
            asyncio.run(submitted(found, WARMUP, "warm-up")),
            asyncio.run(submitted(found, jobs_count, "end to end")),
        )
        per_block = jobs_count // BLOCKS
        bare = start([PYTHON, "-m", "benchmarks.arq_floor"], found.worker_env)
        try:
            with worker(found.worker_env):
                asyncio.run(imagedock_block(found, warmup))  # not counted: loads every path
                asyncio.run(floor_block(found.redis_url, WARMUP, -1))
                for block in range(BLOCKS):
                    part = jobs[block * per_block : (block + 1) * per_block]
                    order = ("ours", "floor") if block % 2 == 0 else ("floor", "ours")
                    for which in order:
                        if which == "ours":
                            got = asyncio.run(imagedock_block(found, part))
                            ours += got
                            say(f"  imagedock block {block + 1}: p50 "
                                f"{median(t.total for t in got) * 1000:.1f} ms")  # fmt: skip
                        else:
                            waits = asyncio.run(floor_block(found.redis_url, per_block, block))
                            floor += waits
                            say(f"  arq floor block {block + 1}: p50 {median(waits) * 1000:.1f} ms")
        finally:
            stop(bare)
    totals = [t.total for t in ours]
    p50, p99 = percentile(totals, 0.5), percentile(totals, 0.99)
    f50, f99 = percentile(floor, 0.5), percentile(floor, 0.99)
    reference = "arq floor: enqueue to a no-op job starting, same queue settings"
    result.rows.append(
        Row("webhook to `job.landed`, less `landing_ms`: p50", f"{p50 * 1000:.1f} ms", reference,
            f"{f50 * 1000:.1f} ms", ratio(p50, f50), "< 20 ms", p50 < 0.020)
    )  # fmt: skip
    result.rows.append(
        Row("webhook to `job.landed`, less `landing_ms`: p99", f"{p99 * 1000:.1f} ms", reference,
            f"{f99 * 1000:.1f} ms", ratio(p99, f99), "< 100 ms", p99 < 0.100)
    )  # fmt: skip
    parts = [
        ("webhook sent to `webhook.accepted` logged", [t.intake for t in ours]),
        ("`webhook.accepted` to the landing starting, and `job.landed` logged after it",
         [t.total - t.intake for t in ours]),
        ("`landing_ms` (left out above)", [t.landing for t in ours]),
        ("the whole, webhook to `job.landed`", [t.total + t.landing for t in ours]),
        ("arq floor", floor),
    ]  # fmt: skip
    result.details.append(
        "Where the time goes, over all jobs:\n\n"
        + table(
            ["part", "p50 ms", "p90 ms", "p99 ms"],
            [
                (name, *(f"{percentile(values, q) * 1000:.1f}" for q in (0.5, 0.9, 0.99)))
                for name, values in parts
            ],
        )
    )
    result.notes.append(
        f"{jobs_count} jobs of one small PNG (the simulator's natural size, a few KiB), webhooks "
        f"sent at {RATE:g} a second in {BLOCKS} blocks alternating with blocks of as many "
        "enqueues to the bare arq worker; the receiver and the worker are `imagedock receiver` "
        "and `imagedock worker` at WARNING. The landing worker polls its queue every "
        f"{LANDING_POLL_DELAY * 1000:g} ms (`poll_delay`), so a job waits half that on average "
        "before it starts: the arq floor, with the same setting, shows that wait on its own."
    )
    result.finish(args.out)


if __name__ == "__main__":
    main()
