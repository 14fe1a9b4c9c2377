"""Downstream events: `job.landed` and `job.failed`, to a Redis Stream and to every sink.

A state change that owes an event records it as `pending_event` in the same Lua script that makes
the change; publishing clears it. A crash in between leaves the event pending, and whoever next
touches the job (a landing retry, the poller, a replay) publishes it. The event id is derived from
(job, type), so a republished event is the same event, and each (event, sink) delivery is one
arq job that collapses duplicates. The sinks themselves are `worker.sinks`.
"""

import json
import time
from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis

from worker import metrics
from worker.apiframe.catalog import metric_label
from worker.ledger import keys
from worker.ledger.ledger import Ledger
from worker.ledger.log import echo
from worker.ledger.records import JobRecord
from worker.ledger.scripts import source
from worker.runtime.queue import enqueue_delivery
from worker.sinks.base import Sink
from worker.sinks.body import build_event, encode, event_id, stub_of
from worker.sinks.delivery import EVENT_TTL, forget_deliveries
from worker.status import FAILURES, Status
from worker.timestamps import iso_time

MAX_REASON = 500  # characters of a failure's reason kept in the record and its event


class Events:
    """Publishing and redelivering events, to the stream and to every sink."""

    def __init__(
        self,
        redis: ArqRedis,
        ledger: Ledger,
        sinks: Sequence[Sink],
        stream_maxlen: int = 100_000,
    ) -> None:
        self.redis = redis
        self.ledger = ledger
        self.sinks = {sink.name: sink for sink in sinks}
        self.stream_maxlen = stream_maxlen
        self._publish = redis.register_script(source("publish"))

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
            outcome = record.outcome(time.time())
            await self.ledger.log(
                ref,
                record.job_id,
                actor,
                "job.failed",
                counting=(metrics.JOBS_FAILED(metric_label(record.model)),),
                reason=error,
                status=status,
                **outcome,
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
        """Stream the event once (its key keeps a stub: see `sinks.body`), and queue one
        delivery per sink."""
        event = build_event(record, event_type, iso_time())
        fresh = await self._publish(
            keys=[keys.event(event["id"]), keys.EVENTS, keys.job(record.ref), keys.POLL_SET],
            args=[
                encode(event),
                self.stream_maxlen,
                record.ref,
                EVENT_TTL,
                stub_of(record, event),
                self.ledger.script_config(),
                actor,
                record.job_id or "",
                time.time(),
            ],
        )
        if fresh:  # as the script logged it
            detail = {"id": event["id"], "type": event_type}
            echo("event.published", record.ref, record.job_id, actor, detail)
        for name, sink in self.sinks.items():
            if sink.serves(record, event_type):
                await enqueue_delivery(self.redis, event["id"], name)
        return str(event["id"])

    async def republish(self, record: JobRecord, actor: str) -> list[str]:
        """Deliver the job's events again to every sink, with their original ids."""
        replayed = []
        for event_type in ("job.landed", "job.failed"):
            identifier = event_id(record.job_id or record.ref, event_type)
            if await self.redis.exists(keys.event(identifier)):
                for name, sink in self.sinks.items():
                    if sink.serves(record, event_type):
                        await forget_deliveries(self.redis, identifier, name)
                        await enqueue_delivery(self.redis, identifier, name)
                replayed.append(identifier)
        await self.ledger.log(record.ref, record.job_id, actor, "event.replayed", ids=replayed)
        return replayed

    async def dead_letters(self, *, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """A page of dead letters, newest first."""
        end = offset + limit - 1
        letters = await self.redis.lrange(keys.DEAD_LETTERS, offset, end)  # type: ignore[misc]
        return [json.loads(raw) for raw in letters]

    async def redrive(self) -> int:
        """Queue every dead letter for delivery again, from a fresh schedule. A letter for a
        sink no longer configured is dropped, and says so in the log."""
        count = 0
        while raw := await self.redis.rpop(keys.DEAD_LETTERS):  # type: ignore[misc]
            letter = json.loads(raw)
            sink = self.sink_for(letter)
            ref, job_id, event = letter.get("ref"), letter.get("jobId"), letter["eventId"]
            if sink is None:
                await self.ledger.log(ref, job_id, "redrive", "event.dropped", id=event)
                continue
            await forget_deliveries(self.redis, event, sink.name)
            await enqueue_delivery(self.redis, event, sink.name)
            await self.ledger.log(
                ref, job_id, "redrive", "event.redriven", id=event, sink=sink.name
            )
            count += 1
        return count

    def sink_for(self, letter: dict[str, Any]) -> Sink | None:
        """The sink a dead letter names; letters written before sinks had names hold a URL."""
        return self.resolve(letter.get("sink") or letter.get("url") or "")

    def resolve(self, name: str) -> Sink | None:
        """A sink by its name, or a webhook sink by its URL (as deliveries queued before sinks
        had names carry it)."""
        found = self.sinks.get(name)
        if found is None:
            found = next((s for s in self.sinks.values() if getattr(s, "url", None) == name), None)
        return found
