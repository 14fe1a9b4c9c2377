"""The queue: the process's Redis pool, and every arq job imagedock enqueues, by name, with the
id that makes duplicates collapse. Jobs travel as JSON: nothing read from Redis can run code.

The domain enqueues only through here; `worker.runtime.tasks` and `arq_worker` run the jobs. The
landing queued by the webhook script (`ledger/lua/enqueue.lua`) is written in arq's own format
from `QueuedJob`, so it collapses with one queued here exactly as arq's `_job_id` makes it.
"""

import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import Job, serialize_job
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError, TimeoutError

from worker.ledger.keys import LANDING_QUEUE, digest
from worker.runtime.connections import BOUNDED

SOCKET_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
LAND = "land"
DELIVER = "deliver"
REPLAY = "replay"
BULK_REPLAY = "bulk_replay"
PROGRESS = "progress"


def serialize(value: Any) -> bytes:
    return json.dumps(value, default=repr).encode()


def deserialize(raw: bytes) -> Any:
    return json.loads(raw)


async def connect(url: str, *, max_connections: int = MAX_CONNECTIONS) -> ArqRedis:
    """A Redis pool that can also enqueue arq jobs; `open_deps` makes the process's one.

    Reads time out and idle sockets are probed, so a Redis that vanishes without closing its
    connections (a partition, a failed-over node) is noticed in seconds, not when the kernel
    gives up on the socket a quarter of an hour later. At most `max_connections` are open: a
    command past them waits for one (up to the socket timeout), so however many requests a
    process takes, its share of Redis's `maxclients` is fixed. No command imagedock sends blocks
    but the live log's one reader.
    """
    connections = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=30,
        retry_on_timeout=True,
        retry_on_error=[ConnectionError, TimeoutError],
    )
    connections.connection_class = BOUNDED[connections.connection_class]
    redis = ArqRedis(
        connections,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=LANDING_QUEUE,
    )
    try:
        await redis.ping()
    except BaseException:
        await redis.aclose(close_connection_pool=True)
        raise
    return redis


def delivery_id(event_id: str, sink: str) -> str:
    """One delivery of an event per sink: duplicates collapse while it is queued."""
    return f"deliver:{event_id}:{digest(sink)}"


def landing_id(job_id: str) -> str:
    """One landing per Apiframe job: concurrent enqueues for the same job collapse into one."""
    return f"land:{job_id}"


async def enqueue_landing(redis: ArqRedis, job_id: str, *, defer: float = 0) -> bool:
    """Queue the landing of `job_id`; False when one is already queued or running."""
    job: Job | None = await redis.enqueue_job(
        LAND,
        job_id,
        _job_id=landing_id(job_id),
        _queue_name=LANDING_QUEUE,
        _defer_by=timedelta(seconds=defer) if defer else None,
    )
    return job is not None


async def landing_pending(redis: Redis, job_id: str) -> bool:
    """Whether the landing of `job_id` is queued or running (arq keeps its job until the end)."""
    return bool(await redis.exists(job_key_prefix + landing_id(job_id)))


async def enqueue_bulk_replay(
    redis: ArqRedis, bulk_id: str, offset: int, *, later: float = 0.0
) -> bool:
    """Queue a bulk replay's task for the jobs from `offset` (`worker.replays`), `later`
    seconds from now."""
    job: Job | None = await redis.enqueue_job(
        BULK_REPLAY,
        bulk_id,
        offset,
        _job_id=f"bulk:{bulk_id}:{offset}",
        _queue_name=LANDING_QUEUE,
        _defer_by=later or None,
    )
    return job is not None


async def enqueue_delivery(redis: ArqRedis, event_id: str, sink: str) -> bool:
    """Queue one delivery of one event to one sink; duplicates collapse while it is queued."""
    job: Job | None = await redis.enqueue_job(
        DELIVER,
        event_id,
        sink,
        _job_id=delivery_id(event_id, sink),
        _queue_name=LANDING_QUEUE,
    )
    return job is not None


async def enqueue_progress(redis: ArqRedis, ref: str, progress: int) -> bool:
    """Queue the `progress` webhook a `/v2/` caller asked for; one per job and value."""
    job: Job | None = await redis.enqueue_job(
        PROGRESS, ref, progress, _job_id=f"progress:{ref}:{progress}", _queue_name=LANDING_QUEUE
    )
    return job is not None


async def enqueue_replay(redis: ArqRedis, job_id: str) -> bool:
    job: Job | None = await redis.enqueue_job(
        REPLAY, job_id, _job_id=f"replay:{job_id}", _queue_name=LANDING_QUEUE
    )
    return job is not None


@dataclass(frozen=True)
class QueuedJob:
    """One arq job as `enqueue.lua` writes it: arq's key names, score and serialized payload."""

    id: str
    queue: str
    payload: str
    score: int

    def script_args(self) -> list[str | int]:
        """In `enqueue.lua`'s order: passed flat, so the payload is not encoded a second time."""
        key, result_key = job_key_prefix + self.id, result_key_prefix + self.id
        return [self.id, key, result_key, self.queue, self.payload, self.score, expires_extra_ms]


def landing_job(job_id: str) -> QueuedJob:
    """The landing of `job_id`, as `enqueue_landing` would queue it now."""
    now_ms = round(time.time() * 1000)
    payload = serialize_job(LAND, (job_id,), {}, None, now_ms, serializer=serialize)
    return QueuedJob(landing_id(job_id), LANDING_QUEUE, payload.decode(), now_ms)
