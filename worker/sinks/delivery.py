"""Delivering one event to one sink, the same way for every kind of sink.

Each (event, sink) has its own attempt count. A failed attempt waits out the schedule (Svix's by
default) or the sink's own `retry_after`; one that exhausts the schedule becomes a dead letter,
with its last status and the start of the last answer, until it is redriven. Logs, keys and dead
letters name a sink by its name only.
"""

import json
import time
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry.util.types import AttributeValue
from redis.asyncio import Redis

from worker import metrics
from worker.ledger import keys
from worker.ledger.ledger import Ledger
from worker.ledger.records import JobRecord, text
from worker.sinks.base import Sink
from worker.sinks.body import build_event, encode
from worker.traces import job_span

log = structlog.get_logger("delivery")
EVENT_TTL = 30 * 24 * 3600


class DeliveryRetry(Exception):
    def __init__(self, defer: float) -> None:
        super().__init__(f"retry in {defer} s")
        self.defer = defer


@dataclass(frozen=True)
class DeliveryDeps:
    redis: Redis
    ledger: Ledger
    schedule: tuple[float, ...]
    dead_letters_max: int


async def deliver_event(deps: DeliveryDeps, event_id: str, sink: Sink) -> str:
    """Send the event once; returns `delivered`, `dead`, `missing` or `unserved` (an event the
    sink does not take), or raises DeliveryRetry."""
    event, record = await body_of(deps.ledger, event_id)
    if event is None:
        log.warning("event.missing", event_id=event_id)
        return "missing"
    if not sink.serves(record, event["type"]):
        return "unserved"
    if await deps.redis.exists(keys.delivered(event_id, sink.name)):
        return "delivered"
    raw = encode(event)
    ref, job_id = event["data"].get("ref"), event["data"].get("jobId")
    attempt = int(await deps.redis.incr(keys.attempts(event_id, sink.name)))
    await deps.redis.expire(keys.attempts(event_id, sink.name), EVENT_TTL)
    said_of: dict[str, AttributeValue] = {"imagedock.sink": sink.name, "imagedock.attempt": attempt}
    with job_span("event.deliver", record.trace if record else None, **said_of) as span:
        sent = await sink.send(event_id, raw, record)
        if sent.status is not None:
            span.set_attribute("http.response.status_code", sent.status)
    said: dict[str, Any] = {
        "id": event_id,
        "sink": sink.name,
        "attempt": attempt,
        "status": sent.status,
    }
    if sent.ok:
        await deps.redis.set(keys.delivered(event_id, sink.name), attempt, ex=EVENT_TTL)
        delivered = metrics.EVENT_DELIVERIES("delivered")
        await deps.ledger.log(
            ref, job_id, "worker", "event.delivered", counting=(delivered,), **said
        )
        return "delivered"
    if attempt >= len(deps.schedule):
        letter = {
            "eventId": event_id,
            "type": event["type"],
            "jobId": job_id,
            "ref": ref,
            "sink": sink.name,
            "attempts": attempt,
            "lastStatus": sent.status,
            "lastBody": sent.excerpt,
            "failedAt": time.time(),
        }
        async with deps.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(keys.DEAD_LETTERS, json.dumps(letter))
            pipe.ltrim(keys.DEAD_LETTERS, 0, deps.dead_letters_max - 1)  # the oldest go first
            await pipe.execute()
        dead = metrics.EVENT_DELIVERIES("dead")
        await deps.ledger.log(ref, job_id, "worker", "event.dead", counting=(dead,), **said)
        return "dead"
    wait = sent.retry_after or deps.schedule[attempt]
    retried = metrics.EVENT_DELIVERIES("retried")
    await deps.ledger.log(
        ref, job_id, "worker", "event.retry", counting=(retried,), retry_in=wait, **said
    )
    raise DeliveryRetry(wait)


async def body_of(ledger: Ledger, event_id: str) -> tuple[dict[str, Any] | None, JobRecord | None]:
    """The event, built again from its stub and its job's record, and the record; None for
    either that is gone."""
    stored = text(await ledger.redis.get(keys.event(event_id)))
    if stored is None:
        return None, None
    stub: dict[str, Any] = json.loads(stored)
    if "data" in stub:  # stored whole, as events were before their stubs
        return stub, await ledger.get(stub["data"].get("ref") or "")
    record = await ledger.get(stub["ref"])
    if record is None:
        return None, None
    return build_event(record, stub["type"], stub["timestamp"]), record


async def delivery_states(redis: Redis, deliveries: list[tuple[str, str]], tries: int) -> list[str]:
    """How each (event id, sink) delivery stands, in one round trip: `delivered`, `failed`
    (its schedule of `tries` spent) or `pending`."""
    async with redis.pipeline(transaction=False) as pipe:
        for event_id, sink in deliveries:
            pipe.exists(keys.delivered(event_id, sink))
            pipe.get(keys.attempts(event_id, sink))
        found = await pipe.execute()
    states = []
    for delivered, attempts in zip(found[::2], found[1::2], strict=True):
        failed = int(attempts or 0) >= tries
        states.append("delivered" if delivered else "failed" if failed else "pending")
    return states


async def forget_deliveries(redis: Redis, event_id: str, sink: str) -> None:
    """Start the event's delivery to `sink` afresh: a new schedule, and sent even if it was."""
    await redis.delete(keys.attempts(event_id, sink), keys.delivered(event_id, sink))
