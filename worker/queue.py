"""arq, kept behind this one module so that another queue (SAQ, taskiq) could replace it without
touching the domain. Jobs travel as JSON: nothing read from Redis can run code."""

import hashlib
import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from redis.exceptions import ConnectionError, TimeoutError

LANDING_QUEUE = "imagedock:landing"
POLLING_QUEUE = "imagedock:polling"
LAND = "land"
DELIVER = "deliver"
REPLAY = "replay"


def serialize(value: Any) -> bytes:
    return json.dumps(value, default=repr).encode()


def deserialize(raw: bytes) -> Any:
    return json.loads(raw)


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.retry_on_timeout = True
    settings.retry_on_error = [ConnectionError, TimeoutError]
    return settings


async def connect(url: str) -> ArqRedis:
    """A Redis pool that can also enqueue arq jobs; `open_deps` makes the process's one."""
    return await create_pool(
        redis_settings(url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=LANDING_QUEUE,
    )


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
