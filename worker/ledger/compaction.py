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

import structlog
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from worker.landing.errors import LandingError
from worker.ledger import keys
from worker.ledger.archive import Archive, Archived
from worker.ledger.ledger import Ledger
from worker.ledger.log import LogEntry
from worker.ledger.records import decoded, text
from worker.ledger.scripts import source
from worker.status import FINAL

BATCH = 200  # jobs a pass compacts at most
AT_ONCE = 8  # timelines written at once
AGAIN = 60.0  # seconds before a job that changed meanwhile, or failed, is tried again
# Seconds a pass holds the jobs it took: no other pass writes their timelines meanwhile, and
# one that died (or was cancelled mid-write) only delays them.
LEASE = 300.0
# What the summary keeps: what `page.lua` filters and searches on, and what the scripts read of
# a finished job (its status, job id, model and caller). The rest is in the timeline.
SUMMARY = (
    *("ref", "status", "job_id", "model", "prompt", "error", "caller"),
    *("created_at", "updated_at"),
)
# Kept in Redis only, never written to S3 for good: a caller's webhook URL may carry its token.
PRIVATE = ("callback_url",)
log = structlog.get_logger("compaction")
ENDED = frozenset(status.value for status in FINAL)


async def compact_due(ledger: Ledger, archive: Archive, ended_before: float) -> int:
    """Compact up to `BATCH` jobs that ended before `ended_before`; returns how many were."""
    claim = ledger.redis.register_script(source("claim"))  # the poller's: each one leased
    due = await claim(keys=[keys.COMPACT], args=[ended_before, BATCH, LEASE])
    limit = asyncio.Semaphore(AT_ONCE)
    script = ledger.redis.register_script(source("compact"))

    async def one(ref: str) -> bool:
        async with limit:
            try:
                return await compact(ledger, archive, script, ref, ended_before)
            except (LandingError, RedisError) as exc:  # S3 or Redis out of reach: later
                log.warning("compaction.failed", ref=ref, error=str(exc))
                await ledger.redis.zadd(keys.COMPACT, {ref: ended_before + AGAIN})
                return False

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
    fields = decoded(raw)
    if not fields or "archive" in fields:  # gone with the retention, or compacted before
        await ledger.redis.zrem(keys.COMPACT, ref)
        return False
    if fields.get("status") not in ENDED or fields.get("pending_event"):
        await ledger.redis.zadd(keys.COMPACT, {ref: ended_before + AGAIN})
        return False
    entries = [LogEntry.from_redis(entry_id, entry) for entry_id, entry in rows]
    stored = decoded(objects)
    kept = {name: value for name, value in fields.items() if name not in PRIVATE}
    key = await archive.write(fields.get("job_id") or ref, Archived(kept, stored, entries))
    summary = {name: fields[name] for name in (*SUMMARY, *PRIVATE) if fields.get(name)}
    names = [keys.job(ref), keys.objects(ref), keys.job_log(ref), keys.COMPACT]
    last = entries[-1].id if entries else ""
    done = await script(
        keys=names, args=[ref, fields.get("updated_at", ""), last, key, json.dumps(summary)]
    )
    if int(done) < 0:
        await ledger.redis.zadd(keys.COMPACT, {ref: ended_before + AGAIN})
    return int(done) > 0
