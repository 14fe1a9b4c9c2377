"""arq, kept behind this one module so that another queue (SAQ, taskiq) could replace it without
touching the domain. Jobs travel as JSON: nothing read from Redis can run code."""

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import Job, serialize_job
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError, TimeoutError

from worker.redis_connections import BOUNDED

SOCKET_TIMEOUT = 10.0
LANDING_QUEUE = "imagedock:landing"
POLLING_QUEUE = "imagedock:polling"
LAND = "land"
DELIVER = "deliver"
REPLAY = "replay"


def serialize(value: Any) -> bytes:
    return json.dumps(value, default=repr).encode()


def deserialize(raw: bytes) -> Any:
    return json.loads(raw)


async def connect(url: str) -> ArqRedis:
    """A Redis pool that can also enqueue arq jobs; `open_deps` makes the process's one.

    Reads time out and idle sockets are probed, so a Redis that vanishes without closing its
    connections (a partition, a failed-over node) is noticed in seconds, not when the kernel
    gives up on the socket a quarter of an hour later. No command imagedock sends blocks.
    """
    connections = ConnectionPool.from_url(
        url,
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


def url_digest(url: str) -> str:
    """A short, stable name for an endpoint, for keys that must not hold the URL itself."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def endpoint_name(url: str) -> str:
    """How logs name an event endpoint: its origin and digest, never its path or query, which
    often carry a credential (a Slack or Zapier hook's token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}#{url_digest(url)[:8]}"


def delivery_id(event_id: str, url: str) -> str:
    """One delivery of an event per endpoint: duplicates collapse while it is queued."""
    return f"deliver:{event_id}:{url_digest(url)}"


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


async def enqueue_delivery(redis: ArqRedis, event_id: str, url: str) -> bool:
    """Queue one delivery of one event to one endpoint; duplicates collapse while it is queued."""
    job: Job | None = await redis.enqueue_job(
        DELIVER,
        event_id,
        url,
        _job_id=delivery_id(event_id, url),
        _queue_name=LANDING_QUEUE,
    )
    return job is not None


async def enqueue_replay(redis: ArqRedis, job_id: str) -> bool:
    job: Job | None = await redis.enqueue_job(
        REPLAY, job_id, _job_id=f"replay:{job_id}", _queue_name=LANDING_QUEUE
    )
    return job is not None


# arq's enqueue (arq 0.28 `ArqRedis.enqueue_job`) as a Lua function, for scripts that queue a job
# in the same call that changes the ledger: refused while the job or its kept result exists (so
# duplicates collapse exactly as `_job_id` makes them), else the payload and the queue entry.
# `args` holds a `QueuedJob.script_args()` list from position `at`. Returns 1 if queued, 0 if it
# collapsed.
ENQUEUE = """
local function enqueue(args, at)
  local id, key, result_key, queue, payload, score, expires_ms = unpack(args, at, at + 6)
  if redis.call('EXISTS', key, result_key) > 0 then return 0 end
  redis.call('PSETEX', key, expires_ms, payload)
  redis.call('ZADD', queue, score, id)
  return 1
end
"""


@dataclass(frozen=True)
class QueuedJob:
    """One arq job as `ENQUEUE` writes it: arq's key names, score and serialized payload."""

    id: str
    queue: str
    payload: str
    score: int

    def script_args(self) -> list[str | int]:
        """In `ENQUEUE`'s order: passed flat, so the payload is not encoded a second time."""
        key, result_key = job_key_prefix + self.id, result_key_prefix + self.id
        return [self.id, key, result_key, self.queue, self.payload, self.score, expires_extra_ms]


def landing_job(job_id: str) -> QueuedJob:
    """The landing of `job_id`, as `enqueue_landing` would queue it now."""
    now_ms = round(time.time() * 1000)
    payload = serialize_job(LAND, (job_id,), {}, None, now_ms, serializer=serialize)
    return QueuedJob(landing_id(job_id), LANDING_QUEUE, payload.decode(), now_ms)
