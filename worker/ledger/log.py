"""The job log: one stream per job and a global one for dashboards, each entry also one structlog
line, so a log shipper sees what the ledger sees without reading Redis.

An entry's fields are written here for Python and in `lua/log_entry.lua` for the scripts; both
read back as the same `LogEntry`.
"""

import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from worker.ledger import keys
from worker.ledger.records import text

if TYPE_CHECKING:
    from worker.ledger.archive import Archive

GLOBAL_LOG_MAXLEN = 100_000
JOB_LOG_MAXLEN = 1_000

# Entries an operator should notice; the rest are logged at INFO.
WARNINGS = frozenset(
    {
        "webhook.rejected",
        "webhook.missed",
        "job.failed",
        "landing.retry",
        "submit.error",
        "poll.error",
        "event.retry",
        "event.dead",
    }
)
RESERVED = frozenset({"event", "level", "timestamp", "ref", "job_id", "actor"})
log = structlog.get_logger("ledger")

# A stream id: two numbers Redis holds as unsigned 64-bit. Nineteen digits always fit, twenty
# may not, and the log's own ids (milliseconds, a sequence) never need more: one pattern, the
# same in the code and in the document.
LOG_ID_PATTERN = r"[0-9]{1,19}-[0-9]{1,19}"
LOG_ID = re.compile(LOG_ID_PATTERN)


def is_log_id(value: str) -> bool:
    """Whether `value` is a stream id Redis can read."""
    return LOG_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class LogEntry:
    id: str
    ts: float
    actor: str
    event: str
    ref: str
    job_id: str
    detail: dict[str, Any]

    @classmethod
    def from_redis(cls, entry_id: bytes | str, raw: dict[Any, Any]) -> "LogEntry":
        def get(name: str) -> str:
            return text(raw.get(name.encode(), raw.get(name, ""))) or ""

        return cls(
            id=text(entry_id) or "",
            ts=float(get("ts") or 0),
            actor=get("actor"),
            event=get("event"),
            ref=get("ref"),
            job_id=get("job_id"),
            detail=detail_of(get("detail")),
        )

    def public(self) -> dict[str, Any]:
        return asdict(self)


def detail_of(raw: str) -> dict[str, Any]:
    """An entry's detail; one that is not a JSON object (written by hand, or by something else
    on the stream) is shown clipped rather than stopping every reader of the log."""
    try:
        detail = json.loads(raw or "{}")
    except ValueError:
        detail = None
    return detail if isinstance(detail, dict) else {"unreadable": raw[:200]}


@dataclass(frozen=True)
class Noted:
    """An entry kept in hand, written later with another in one round trip: its time is when
    it happened."""

    event: str
    detail: Mapping[str, Any]
    ts: float


def queue_entry(
    pipe: Pipeline,
    ref: str | None,
    job_id: str | None,
    actor: str,
    event: str,
    detail: Mapping[str, Any],
    ts: float | None = None,
    *,
    keep: float | None = None,
) -> None:
    """Add the entry to the job's log and the global one, in `pipe`. With `keep`, a job log
    that has no expiry gets one: a log begun again after its job was compacted (a replay's,
    a late delivery's) goes with the job's summary, never outlives it by long."""
    entry: dict[FieldT, EncodableT] = {
        "ts": time.time() if ts is None else ts,
        "actor": actor,
        "event": event,
        "ref": ref or "",
        "job_id": job_id or "",
        "detail": json.dumps(detail, default=str),
    }
    if ref:
        pipe.xadd(keys.job_log(ref), entry, maxlen=JOB_LOG_MAXLEN, approximate=True)
        if keep is not None:
            pipe.expire(keys.job_log(ref), round(keep), nx=True)
    pipe.xadd(keys.GLOBAL_LOG, entry, maxlen=GLOBAL_LOG_MAXLEN, approximate=True)


def echo(
    event: str, ref: str | None, job_id: str | None, actor: str, detail: Mapping[str, Any]
) -> None:
    """The log entry as one structlog line; a detail named like a line's own field is prefixed."""
    fields = {(f"detail_{k}" if k in RESERVED else k): v for k, v in detail.items()}
    level = log.warning if event in WARNINGS else log.info
    level(event, ref=ref or None, job_id=job_id or None, actor=actor, **fields)


class LogReader:
    """Reading the job log: one job's, the newest entries, or following the global one."""

    def __init__(self, redis: Redis, archive: "Archive | None" = None) -> None:
        self.redis = redis
        self.archive = archive

    async def job(self, ref: str) -> list[LogEntry]:
        """The job's whole log: a compacted job's from its timeline in S3, then whatever was
        written since."""
        async with self.redis.pipeline(transaction=True) as pipe:  # one moment: see `get`
            pipe.hget(keys.job(ref), "archive")
            pipe.xrange(keys.job_log(ref))
            archived_at, rows = await pipe.execute()
        since = [LogEntry.from_redis(i, e) for i, e in rows]
        if not archived_at or self.archive is None:
            return since
        from worker.ledger.archive import ArchiveMissing  # here: that module imports this one

        try:
            archived = await self.archive.read(text(archived_at) or "")
        except ArchiveMissing as exc:  # deleted by hand: what Redis still holds
            log.warning("ledger.timeline_missing", ref=ref, error=str(exc))
            return since
        return [*archived.entries, *since]

    async def latest(self, count: int) -> list[LogEntry]:
        """The last `count` global entries, oldest first."""
        rows = await self.redis.xrevrange(keys.GLOBAL_LOG, count=count)
        return [LogEntry.from_redis(i, e) for i, e in reversed(rows)]

    async def follow(self, after: str, *, block_ms: int, count: int = 100) -> list[LogEntry]:
        """Global entries after the stream id `after`, waiting up to `block_ms` for the first:
        one blocking XREAD, no polling loop."""
        answer = await self.redis.xread({keys.GLOBAL_LOG: after}, count=count, block=block_ms)
        return [LogEntry.from_redis(i, e) for _, rows in answer for i, e in rows]

    async def last_id(self) -> str:
        """The id of the newest global entry ('0-0' if none): where "from now on" begins. A
        reader that waited on `$` instead would miss what arrives between two of its reads."""
        rows = await self.redis.xrevrange(keys.GLOBAL_LOG, count=1)
        return text(rows[0][0]) or "0-0" if rows else "0-0"

    async def after(self, after: str = "-", *, count: int = 100) -> list[LogEntry]:
        """Global entries after the stream id `after` (from the first if '-'), oldest first."""
        start = f"({after}" if after != "-" else "-"
        rows = await self.redis.xrange(keys.GLOBAL_LOG, min=start, count=count)
        return [LogEntry.from_redis(i, e) for i, e in rows]
