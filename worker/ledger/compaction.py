"""Compacting finished jobs: a job that ended `IMAGEDOCK_COMPACT_AFTER` ago (its event published,
its deliveries most likely done) has its whole record, objects and log written to S3 as its
timeline (`worker.ledger.archive`), and keeps in Redis only a summary: the fields the job list
filters and searches on, and the timeline's key. The ledger reads the rest back from S3, so every
answer about the job stays the same.

The poller runs it after each pass, a batch at a time. A job that changed while its timeline was
being written (a late webhook, a replay's entry) is tried again later; one that changes after
it is compacted keeps its new entries in Redis beside the timeline.
"""

import asyncio
import json

from redis.commands.core import AsyncScript

from worker.ledger import keys
from worker.ledger.archive import Archive, Archived
from worker.ledger.ledger import Ledger
from worker.ledger.log import LogEntry
from worker.ledger.records import text
from worker.ledger.scripts import source
from worker.status import FINAL, Status

BATCH = 200  # jobs a pass compacts at most
AT_ONCE = 8  # timelines written at once
AGAIN = 60.0  # seconds before a job that changed meanwhile is tried again
# What the summary keeps: what `page.lua` filters and searches on, and what the scripts read of
# a finished job (its status, job id, model and caller). The rest is in the timeline.
SUMMARY = (
    *("ref", "status", "job_id", "model", "prompt", "error", "caller"),
    *("created_at", "updated_at"),
)


async def compact_due(ledger: Ledger, archive: Archive, ended_before: float) -> int:
    """Compact up to `BATCH` jobs that ended before `ended_before`; returns how many were."""
    due = await ledger.redis.zrangebyscore(keys.COMPACT, "-inf", ended_before, start=0, num=BATCH)
    limit = asyncio.Semaphore(AT_ONCE)
    script = ledger.redis.register_script(source("compact"))

    async def one(ref: str) -> bool:
        async with limit:
            return await compact(ledger, archive, script, ref, ended_before)

    done = await asyncio.gather(*(one(text(ref) or "") for ref in due))
    return sum(done)


async def compact(
    ledger: Ledger, archive: Archive, script: AsyncScript, ref: str, ended_before: float
) -> bool:
    async with ledger.redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(keys.job(ref))
        pipe.hgetall(keys.objects(ref))
        pipe.xrange(keys.job_log(ref))
        raw, objects, rows = await pipe.execute()
    fields = {text(k) or "": text(v) or "" for k, v in raw.items()}
    if not fields or "archive" in fields:  # gone with the retention, or compacted before
        await ledger.redis.zrem(keys.COMPACT, ref)
        return False
    if Status(fields["status"]) not in FINAL or fields.get("pending_event"):
        await ledger.redis.zadd(keys.COMPACT, {ref: ended_before + AGAIN})
        return False
    entries = [LogEntry.from_redis(entry_id, entry) for entry_id, entry in rows]
    stored = {text(k) or "": text(v) or "" for k, v in objects.items()}
    key = await archive.write(fields.get("job_id") or ref, Archived(fields, stored, entries))
    summary = {name: fields[name] for name in SUMMARY if fields.get(name)}
    names = [keys.job(ref), keys.objects(ref), keys.job_log(ref), keys.COMPACT]
    last = entries[-1].id if entries else ""
    done = await script(
        keys=names, args=[ref, fields["updated_at"], last, key, json.dumps(summary)]
    )
    if int(done) < 0:
        await ledger.redis.zadd(keys.COMPACT, {ref: ended_before + AGAIN})
    return int(done) > 0
