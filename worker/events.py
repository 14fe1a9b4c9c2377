"""Downstream events: `job.landed` and `job.failed`, to a Redis Stream and to signed HTTP endpoints.

A state change that owes an event records it as `pending_event` in the same Lua script that makes
the change; publishing clears it. A crash in between leaves the event pending, and whoever next
touches the job (a landing retry, the poller, a replay) publishes it. The event id is derived from
(job, type), so a republished event is the same event, and each (event, endpoint) delivery is one
arq job that collapses duplicates.
"""

import hashlib
import json
import time
from typing import Any

from arq.connections import ArqRedis

from worker.apiframe.catalog import metric_label
from worker.clock import iso_time
from worker.ledger import POLL_SET, PREFIX, Ledger, text
from worker.queue import endpoint_name, enqueue_delivery, url_digest
from worker.records import JobRecord
from worker.status import FAILURES, Status

STREAM = PREFIX + "events"
DEAD_LETTERS = PREFIX + "events:dead"
EVENT_TTL = 30 * 24 * 3600
MAX_REASON = 500  # characters of a failure's reason kept in the record and its event

# KEYS: event key, stream, job hash, poll set. ARGV: event JSON, stream maxlen, ref, TTL.
# Stores the event and appends it to the stream once; the job then owes nothing and needs no polls.
PUBLISH = """
local fresh = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[4])
if fresh then
  local event = cjson.decode(ARGV[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'id', event['id'], 'type', event['type'], 'payload', ARGV[1])
end
redis.call('HDEL', KEYS[3], 'pending_event')
redis.call('ZREM', KEYS[4], ARGV[3])
if fresh then return 1 end
return 0
"""


def event_id(job_id: str, event_type: str) -> str:
    """Stable for a (job, event type) across retries, replays and crashes."""
    return "evt_" + hashlib.sha256(f"{job_id}:{event_type}".encode()).hexdigest()[:32]


def event_key(identifier: str) -> str:
    return f"{PREFIX}event:{identifier}"


def build_event(record: JobRecord, event_type: str) -> dict[str, Any]:
    job_id = record.job_id or record.ref
    data: dict[str, Any] = {
        "jobId": job_id,
        "ref": record.ref,
        "status": record.status.value,
        "model": record.model,
        "prompt": record.prompt,
        "metadata": record.metadata,
        "images": [stored.public() for stored in record.objects],
    }
    if event_type == "job.failed":
        data["reason"] = record.error or record.status.value
    return {
        "id": event_id(job_id, event_type),
        "type": event_type,
        "timestamp": iso_time(),
        "data": data,
    }


class Events:
    """Publishing and redelivering events, to the stream and to every configured endpoint."""

    def __init__(
        self,
        redis: ArqRedis,
        ledger: Ledger,
        urls: tuple[str, ...],
        stream_maxlen: int = 100_000,
    ) -> None:
        self.redis = redis
        self.ledger = ledger
        self.urls = urls
        self.stream_maxlen = stream_maxlen
        self._publish = redis.register_script(PUBLISH)

    async def finish(
        self,
        ref: str,
        status: Status,
        actor: str,
        *,
        error: str | None = None,
        via: str | None = None,
    ) -> bool:
        """Move the job to a terminal `status` and publish the event that owes; a failure gets
        its one canonical `job.failed` line."""
        if error is not None and len(error) > MAX_REASON:  # a URL or an answer can be any length
            error = error[:MAX_REASON] + "..."
        fields: dict[str, Any] = {"error": error} if error is not None else {}
        if via is not None:
            fields["via"] = via
        moved = await self.ledger.transition(ref, status, actor, **fields)
        record = await self.ledger.get(ref) if moved and status in FAILURES else None
        if record is not None:
            await self.ledger.count(f"failed:{metric_label(record.model)}")
            outcome = record.outcome(time.time())
            await self.ledger.log(
                ref, record.job_id, actor, "job.failed", reason=error, status=status, **outcome
            )
        await self.publish_pending(ref, actor)
        return moved

    async def publish_pending(self, ref: str, actor: str, record: JobRecord | None = None) -> bool:
        """Publish the event the job owes, if any. True if one was owed. `record`, if the caller
        has just read it, saves reading it again."""
        record = record or await self.ledger.get(ref)
        if record is None or not record.pending_event:
            return False
        await self.publish(record, record.pending_event, actor)
        return True

    async def publish(self, record: JobRecord, event_type: str, actor: str) -> str:
        """Store and stream the event once, and queue one delivery per endpoint."""
        event = build_event(record, event_type)
        fresh = await self._publish(
            keys=[event_key(event["id"]), STREAM, self.ledger.job_key(record.ref), POLL_SET],
            args=[json.dumps(event), self.stream_maxlen, record.ref, EVENT_TTL],
        )
        if fresh:
            await self.ledger.log(
                record.ref,
                record.job_id,
                actor,
                "event.published",
                id=event["id"],
                type=event_type,
            )
        for url in self.urls:
            await enqueue_delivery(self.redis, event["id"], url)
        return str(event["id"])

    async def republish(self, record: JobRecord, actor: str) -> list[str]:
        """Deliver the job's events again to every endpoint, with their original ids."""
        replayed = []
        for event_type in ("job.landed", "job.failed"):
            identifier = event_id(record.job_id or record.ref, event_type)
            if await self.redis.exists(event_key(identifier)):
                for url in self.urls:
                    await forget_deliveries(self.redis, identifier, url)
                    await enqueue_delivery(self.redis, identifier, url)
                replayed.append(identifier)
        await self.ledger.log(record.ref, record.job_id, actor, "event.replayed", ids=replayed)
        return replayed

    async def stored(self, identifier: str) -> dict[str, Any] | None:
        raw = text(await self.redis.get(event_key(identifier)))
        return json.loads(raw) if raw else None

    async def dead_letters(self, *, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """A page of dead letters, newest first."""
        end = offset + limit - 1
        letters = await self.redis.lrange(DEAD_LETTERS, offset, end)  # type: ignore[misc]
        return [json.loads(raw) for raw in letters]

    async def redrive(self) -> int:
        """Queue every dead letter for delivery again, from a fresh schedule."""
        count = 0
        while raw := await self.redis.rpop(DEAD_LETTERS):  # type: ignore[misc]
            letter = json.loads(raw)
            await forget_deliveries(self.redis, letter["eventId"], letter["url"])
            await enqueue_delivery(self.redis, letter["eventId"], letter["url"])
            await self.ledger.log(
                letter.get("ref"),
                letter.get("jobId"),
                "redrive",
                "event.redriven",
                id=letter["eventId"],
                endpoint=endpoint_name(letter["url"]),
            )
            count += 1
        return count


def attempts_key(identifier: str, url: str) -> str:
    return f"{PREFIX}attempts:{identifier}:{url_digest(url)}"


def delivered_key(identifier: str, url: str) -> str:
    return f"{PREFIX}delivered:{identifier}:{url_digest(url)}"


async def forget_deliveries(redis: ArqRedis, identifier: str, url: str) -> None:
    """Start the event's delivery to `url` afresh: a new schedule, and sent even if it was."""
    await redis.delete(attempts_key(identifier, url), delivered_key(identifier, url))
