"""Setting a benchmark's Redis up: jobs in the ledger made through the ledger's own API, and a
snapshot of the whole database (DUMP of every key) restored before each round, so every round
starts from the same state and no webhook is ever sent twice for the same job."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from worker.apiframe.results import Kind, dumps, numbered
from worker.ledger.ledger import Ledger
from worker.status import Status

MODEL = "grok-imagine-image"
CHUNK = 2000


@dataclass(frozen=True)
class Job:
    ref: str
    job_id: str


async def gathered(
    count: int, make: Callable[[int], Awaitable[Job]], width: int = 100
) -> list[Job]:
    """`make(n)` for n below `count`, `width` at a time, in order."""
    limit = asyncio.Semaphore(width)

    async def one(n: int) -> Job:
        async with limit:
            return await make(n)

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def queued_jobs(ledger: Ledger, count: int, *, prompt: str = "bench") -> list[Job]:
    """`count` submissions Apiframe has accepted: each QUEUED, its job id attached."""

    async def make(n: int) -> Job:
        job_id = str(uuid.uuid4())
        record, _ = await ledger.create(
            prompt=f"{prompt} {n}", model=MODEL, job_id=job_id, status=Status.QUEUED
        )
        return Job(record.ref, job_id)

    return await gathered(count, make)


async def landed_jobs(ledger: Ledger, count: int) -> list[Job]:
    """`count` jobs taken the whole way to LANDED through the ledger's transitions."""
    jobs = await queued_jobs(ledger, count, prompt="landed")

    async def land(n: int) -> Job:
        job = jobs[n]
        url = f"https://cdn.apiframe.ai/images/{job.job_id}-1.png"
        await ledger.transition(
            job.ref,
            Status.COMPLETED,
            "bench",
            progress=100,
            assets=dumps(numbered(Kind.IMAGE, [url])),
            via="webhook",
        )
        await ledger.transition(job.ref, Status.LANDED, "bench", error="")
        return job

    return await gathered(count, land)


Snapshot = Sequence[tuple[bytes, int, bytes]]  # key, ttl in ms (0: none), DUMP


async def snapshot(redis: Redis) -> Snapshot:
    keys = [key async for key in redis.scan_iter(count=CHUNK)]
    taken: list[tuple[bytes, int, bytes]] = []
    for start in range(0, len(keys), CHUNK):
        part = keys[start : start + CHUNK]
        async with redis.pipeline(transaction=False) as pipe:
            for key in part:
                pipe.pttl(key)
                pipe.dump(key)
            answers = await pipe.execute()
        for n, key in enumerate(part):
            ttl, dumped = answers[2 * n], answers[2 * n + 1]
            taken.append((key, max(0, int(ttl)), dumped))
    return taken


async def restore(redis: Redis, taken: Snapshot) -> None:
    """The database exactly as it was when `taken` (what came since is gone)."""
    await redis.flushdb()
    for start in range(0, len(taken), CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for key, ttl, dumped in taken[start : start + CHUNK]:
                pipe.restore(key, ttl, dumped, replace=True)
            await pipe.execute()
