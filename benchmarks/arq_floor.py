"""A bare arq worker, a process of its own, with the landing worker's queue settings (its
`poll_delay`, `max_jobs` 20, JSON jobs, the same Redis pool): its one function records when it
started, so the time from an enqueue to a job starting can be read back. The floor under any latency
that passes through arq; the end-to-end and Redis-cost benchmarks' reference.

`python -m benchmarks.arq_floor` with IMAGEDOCK_REDIS_URL set.
"""

import asyncio
import os
import time
from typing import Any

from arq import Worker
from arq.worker import func

from worker.runtime.queue import connect, deserialize, serialize
from worker.runtime.tasks import LANDING_POLL_DELAY

QUEUE = "bench:floor"
STARTED = "bench:floor:started"  # hash: arq job id -> when it started


async def record(ctx: dict[str, Any]) -> None:
    await ctx["redis"].hset(STARTED, ctx["job_id"], repr(time.time()))


async def main() -> None:
    redis = await connect(os.environ["IMAGEDOCK_REDIS_URL"])
    worker = Worker(
        functions=[func(record, name="record", keep_result=0)],
        redis_pool=redis,
        queue_name=QUEUE,
        poll_delay=LANDING_POLL_DELAY,
        max_jobs=20,
        job_serializer=serialize,
        job_deserializer=deserialize,
        handle_signals=True,
        health_check_interval=30,
    )
    await worker.async_run()


if __name__ == "__main__":
    asyncio.run(main())
