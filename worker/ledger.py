"""The job ledger in Redis: one hash per submission, an index by Apiframe job id, and job logs.

Every state change runs as one Lua script, so concurrent webhooks, workers and pollers agree on an
order and a state only moves forward; the log entry for a change is written in the same script.
Each job has its own log stream, and one global stream carries every entry for dashboards. Every
entry is also one structlog line, so a log shipper sees what the ledger sees without reading Redis.
"""

import functools
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from worker.apiframe.models import IDEMPOTENCY_WINDOW
from worker.measures import Histogram
from worker.measures import observe as measure
from worker.paging import PAGE, Page, PageQuery, read_page
from worker.records import JobRecord, LogEntry, StoredObject
from worker.status import RANK, TERMINAL, Status

PREFIX = "imagedock:"
GLOBAL_LOG = PREFIX + "log"
BY_TIME = PREFIX + "jobs"  # sorted set: ref -> creation time
# Sorted sets ref -> creation time per status and per model, kept by the transition script, so a
# filtered page of the job log reads one index instead of every record.
BY_STATUS = PREFIX + "jobs:status:"
BY_MODEL = PREFIX + "jobs:model:"
MODELS_SEEN = PREFIX + "models"  # the models with an index, so the retention can trim each
POLL_SET = PREFIX + "poll"  # sorted set: ref -> when the poller should next ask Apiframe
STATS = PREFIX + "stats"  # hash of counters
REJECTED = "webhook_rejected:"  # + reason: the counters of refused webhooks, in STATS
GLOBAL_LOG_MAXLEN = 100_000
DEFAULT_RETENTION = 30 * 24 * 3600
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

RANKS = {status.value: rank for status, rank in RANK.items()}
TERMINALS = {status.value: True for status in TERMINAL}

# The one way a record's state changes, as a Lua function that the transition script and the
# webhook script (`worker.intake`) both run: forward only (or a higher progress at the same
# rank), the fields set with the move, the status indexes moved, the log entry written to the
# job's log and the global one. A job that ends keeps its keys for the retention, then Redis
# forgets it: the manifest in S3 is the permanent record. `c` is the ledger's `script_config()`.
# Returns {1 moved | 2 progress raised | 0 nothing | -1 no record, status before, job id}.
MOVE = """
local function move(job, job_log, objects, new, progress, actor, now, fields, c)
  local current = redis.call('HGET', job, 'status')
  if not current then return {-1, '', ''} end
  local job_id = redis.call('HGET', job, 'job_id') or ''
  if c.terminal[current] or c.ranks[new] < c.ranks[current] then return {0, current, job_id} end
  if c.ranks[new] == c.ranks[current] then
    local had = tonumber(redis.call('HGET', job, 'progress')) or -1
    if progress == '' or tonumber(progress) <= had then return {0, current, job_id} end
    redis.call('HSET', job, 'progress', progress, 'updated_at', now)
    return {2, current, job_id}
  end
  for name, value in pairs(cjson.decode(fields)) do redis.call('HSET', job, name, value) end
  redis.call('HSET', job, 'status', new, 'updated_at', now)
  if progress ~= '' then redis.call('HSET', job, 'progress', progress) end
  local ref = redis.call('HGET', job, 'ref')
  redis.call('ZREM', c.by_status .. current, ref)
  redis.call('ZADD', c.by_status .. new, redis.call('HGET', job, 'created_at') or now, ref)
  local entry = {'ts', now, 'actor', actor, 'event', 'status.changed', 'ref', ref,
    'job_id', job_id, 'detail', cjson.encode({from = current, to = new})}
  redis.call('XADD', job_log, 'MAXLEN', '~', c.job_log_max, '*', unpack(entry))
  redis.call('XADD', c.global_log, 'MAXLEN', '~', c.global_log_max, '*', unpack(entry))
  if c.terminal[new] then
    for _, key in ipairs({job, job_log, objects}) do redis.call('EXPIRE', key, c.retention) end
    if job_id ~= '' then redis.call('EXPIRE', c.job_id_index .. job_id, c.retention) end
  end
  return {1, current, job_id}
end
"""

# KEYS: job hash, job log, objects hash. ARGV: the ledger's script config, new status, progress
# or '', actor, now, fields (JSON).
TRANSITION = (
    MOVE
    + """
return move(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
  cjson.decode(ARGV[1]))
"""
)

# Records Apiframe's job id for a submission, once, unless another submission owns that id.
# KEYS: job hash, index key for the job id. ARGV: job id, now, ref.
# Returns {attached job id (another one on conflict), stashed webhook, owning ref on conflict}.
ATTACH = """
local had = redis.call('HGET', KEYS[1], 'job_id')
if had and had ~= '' then return {had, '', ''} end
if not redis.call('HGET', KEYS[1], 'status') then return {'', '', ''} end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[3] then return {'', '', owner} end
redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'submitted_at', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
local early = redis.call('HGET', KEYS[1], 'early_webhook') or ''
redis.call('HDEL', KEYS[1], 'early_webhook')
return {ARGV[1], early, ''}
"""

# Keeps a webhook that arrived before its submission's job id was recorded; an unsigned one
# never replaces a signed one. KEYS: job hash. ARGV: the webhook (JSON), '1' if signed.
# Returns the job id if one is attached by now (then nothing is stashed), else ''.
STASH = """
local had = redis.call('HGET', KEYS[1], 'job_id')
if had and had ~= '' then return had end
local kept = redis.call('HGET', KEYS[1], 'early_webhook')
if ARGV[2] ~= '1' and kept and cjson.decode(kept)['signed'] then return '' end
redis.call('HSET', KEYS[1], 'early_webhook', ARGV[1])
return ''
"""
# Records a stored image; a job that has already ended (and so expires) takes it along.
# KEYS: objects hash, job hash. ARGV: index, the object (JSON).
ADD_OBJECT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('TTL', KEYS[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
"""


# A stream id: two numbers Redis holds as unsigned 64-bit. Nineteen digits always fit, twenty
# may not, and the log's own ids (milliseconds, a sequence) never need more: one pattern, the
# same in the code and in the document.
LOG_ID_PATTERN = r"[0-9]{1,19}-[0-9]{1,19}"
LOG_ID = re.compile(LOG_ID_PATTERN)


def is_log_id(value: str) -> bool:
    """Whether `value` is a stream id Redis can read."""
    return LOG_ID.fullmatch(value) is not None


def text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Conflict(Exception):
    """The same caller Idempotency-Key came with a different request."""


@dataclass(frozen=True)
class Attached:
    job_id: str  # the job id the submission now has ('' if none)
    early: dict[str, Any] | None  # what a webhook said before the id was attached
    owner: str  # on conflict, the ref that already owns the job id


class Ledger:
    def __init__(self, redis: Redis, *, retention: float = DEFAULT_RETENTION) -> None:
        self.redis = redis
        self.retention = retention
        self._transition = redis.register_script(TRANSITION)
        self._attach = redis.register_script(ATTACH)
        self._stash = redis.register_script(STASH)
        self._page = redis.register_script(PAGE)

    # Keys.

    @staticmethod
    def job_key(ref: str) -> str:
        return f"{PREFIX}job:{ref}"

    @staticmethod
    def index_key(job_id: str) -> str:
        return f"{PREFIX}jobid:{job_id}"

    @staticmethod
    def log_key(ref: str) -> str:
        return f"{PREFIX}log:{ref}"

    @staticmethod
    def objects_key(ref: str) -> str:
        return f"{PREFIX}objects:{ref}"

    # Creating and finding records.

    async def create(
        self,
        *,
        prompt: str,
        model: str,
        params: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        source: str = "submit",
        idempotency_key: str | None = None,
        job_id: str | None = None,
        status: Status = Status.SUBMITTING,
        ref: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """A new record, or the one an earlier call with `idempotency_key` (or for `ref`) made."""
        ref = ref or uuid.uuid4().hex
        now = time.time()
        fingerprint = hashlib.sha256(
            json.dumps([prompt, model, params, metadata], sort_keys=True).encode()
        ).hexdigest()
        fields = {
            "ref": ref,
            "status": status.value,
            "model": model,
            "prompt": prompt,
            "params": json.dumps(params or {}),
            "metadata": json.dumps(metadata or {}),
            "source": source,
            "created_at": now,
            "updated_at": now,
            "fingerprint": fingerprint,
        }
        if idempotency_key is not None:
            claim = f"{PREFIX}idem:{idempotency_key}"
            # Kept as long as Apiframe honours the key imagedock derives from this record.
            if not await self.redis.set(claim, ref, nx=True, ex=IDEMPOTENCY_WINDOW):
                held = text(await self.redis.get(claim)) or ""
                # A claim for this very ref with no record is a create that died between the
                # two writes (or a retried SET): go on and make the record it claimed.
                if held != ref or await self.redis.exists(self.job_key(ref)):
                    return await self._earlier(held, fingerprint)
            elif await self.redis.exists(self.job_key(ref)):  # a derived ref outlived its claim
                return await self._earlier(ref, fingerprint)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.job_key(ref), mapping=fields)
            pipe.zadd(BY_TIME, {ref: now})
            pipe.zadd(BY_STATUS + status.value, {ref: now})
            pipe.zadd(BY_MODEL + model, {ref: now})
            pipe.sadd(MODELS_SEEN, model)
            pipe.hincrby(STATS, "submitted", 1)
            if job_id:
                pipe.hset(self.job_key(ref), mapping={"job_id": job_id, "submitted_at": now})
                pipe.set(self.index_key(job_id), ref)
            await pipe.execute()
        await self.log(ref, job_id, "receiver", "job.created", source=source)
        record = await self.get(ref)
        assert record is not None
        return record, True

    async def _earlier(self, ref: str, fingerprint: str) -> tuple[JobRecord, bool]:
        earlier = await self.get(ref)
        if earlier is None:
            raise Conflict("that Idempotency-Key is still being processed")
        if earlier.fingerprint != fingerprint:
            raise Conflict("that Idempotency-Key was used with a different request")
        return earlier, False

    async def get(self, ref: str) -> JobRecord | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.job_key(ref))
            pipe.hgetall(self.objects_key(ref))
            raw, objects = await pipe.execute()
        if not raw:
            return None
        return JobRecord.from_redis(
            {text(k) or "": text(v) or "" for k, v in raw.items()},
            [StoredObject.from_json(text(value) or "{}") for value in objects.values()],
        )

    async def ref_for(self, job_id: str) -> str | None:
        return text(await self.redis.get(self.index_key(job_id)))

    async def by_job_id(self, job_id: str) -> JobRecord | None:
        ref = await self.ref_for(job_id)
        return await self.get(ref) if ref else None

    async def find(self, id_or_ref: str) -> JobRecord | None:
        """A record by Apiframe job id or by imagedock ref."""
        return await self.by_job_id(id_or_ref) or await self.get(id_or_ref)

    async def forget_older(self, now: float) -> int:
        """Trim the indexes of records past the retention (their keys expired by then)."""
        models = await self.redis.smembers(MODELS_SEEN)  # type: ignore[misc]
        indexes = [BY_STATUS + status.value for status in Status]
        indexes += [BY_MODEL + (text(model) or "") for model in models]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(BY_TIME, "-inf", now - self.retention)
            for index in indexes:
                pipe.zremrangebyscore(index, "-inf", now - self.retention)
            trimmed, *_ = await pipe.execute()
        return int(trimmed)

    async def page(self, query: PageQuery) -> Page:
        """One page of records, newest first, in one script call: see `worker.paging`."""
        if query.status is not None:
            index = BY_STATUS + query.status.value
        else:
            index = BY_TIME if query.model is None else BY_MODEL + query.model
        prefixes = {"job_prefix": self.job_key(""), "objects_prefix": self.objects_key("")}
        return await read_page(self._page, query, index=index, **prefixes)

    async def recent(self, limit: int = 50) -> list[JobRecord]:
        """The newest records first."""
        return (await self.page(PageQuery(limit=limit))).records

    # Changing records.

    async def attach(self, ref: str, job_id: str) -> Attached:
        """Record Apiframe's job id once; never one that another submission already owns."""
        attached, early, owner = await self._attach(
            keys=[self.job_key(ref), self.index_key(job_id)], args=[job_id, time.time(), ref]
        )
        early_text = text(early)
        return Attached(
            text(attached) or "", json.loads(early_text) if early_text else None, text(owner) or ""
        )

    async def stash_early(self, ref: str, job_id: str, status: str, signed: bool) -> str:
        """Keep what a webhook says of a submission with no job id yet (a few fields, never the
        body); returns the job id instead if the submission has one by now."""
        early = json.dumps({"jobId": job_id, "status": status, "signed": signed})
        stashed = await self._stash(keys=[self.job_key(ref)], args=[early, "1" if signed else "0"])
        return text(stashed) or ""

    async def adopt(self, ref: str, job_id: str, *, model: str) -> tuple[JobRecord, bool]:
        """A record, under the ref it was submitted with, for a job a signed webhook names but
        this ledger no longer holds (Redis lost its data)."""
        return await self.create(
            prompt="", model=model, source="adopted", job_id=job_id, status=Status.QUEUED, ref=ref
        )

    async def transition(
        self,
        ref: str,
        status: Status,
        actor: str,
        *,
        progress: int | None = None,
        **fields: Any,
    ) -> bool:
        """Move forward to `status` (or raise progress), setting `fields` with it. False if the
        record is already at or past that state, so late and duplicate events change nothing."""
        applied, current, job_id = await self._transition(
            keys=[self.job_key(ref), self.log_key(ref), self.objects_key(ref)],
            args=[
                self.script_config(),
                status.value,
                "" if progress is None else progress,
                actor,
                time.time(),
                move_fields(status, fields),
            ],
        )
        if int(applied) == 1:
            echo("status.changed", ref, text(job_id), actor, {"from": text(current), "to": status})
        return int(applied) > 0

    def script_config(self) -> str:
        """What the ledger's scripts need to know of it (see `MOVE`), as JSON; made again only
        when the retention changes."""
        return script_config(self.retention, self.index_key(""))

    async def schedule_poll(self, ref: str, at: float, *, only_if_tracked: bool = False) -> None:
        await self.redis.zadd(POLL_SET, {ref: at}, xx=only_if_tracked)

    async def count_failure(self, ref: str) -> int:
        """One more failed landing attempt for the job; returns how many so far."""
        key = self.job_key(ref)
        return int(await self.redis.hincrby(key, "landing_failures", 1))  # type: ignore[misc]

    async def count(self, *names: str, observe: Mapping[Histogram, float] | None = None) -> None:
        """Add one to each counter named, and record the observations, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            queue_counts(pipe, names, observe)
            await pipe.execute()

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(STATS)  # type: ignore[misc]
        return {text(k) or "": int(v) for k, v in raw.items()}

    async def set_fields(self, ref: str, **fields: str | float) -> None:
        await self.redis.hset(self.job_key(ref), mapping=dict(fields))  # type: ignore[misc]

    async def add_object(
        self, ref: str, job_id: str, stored: StoredObject, actor: str, event: str, /, **detail: Any
    ) -> None:
        """Record a stored object and write its log entry `event`, in one round trip."""
        async with self.redis.pipeline(transaction=True) as pipe:
            # EVAL, not EVALSHA: a pipeline's script would cost a SCRIPT EXISTS round trip.
            keys = [self.objects_key(ref), self.job_key(ref)]
            pipe.eval(ADD_OBJECT, len(keys), *keys, str(stored.index), stored.to_json())
            self._queue_log(pipe, ref, job_id, actor, event, detail)
            await pipe.execute()
        echo(event, ref, job_id, actor, detail)

    # The job log.

    async def log(
        self, ref: str | None, job_id: str | None, actor: str, event: str, /, **detail: Any
    ) -> None:
        await self.log_counted(ref, job_id, actor, event, (), None, **detail)

    async def log_counted(
        self,
        ref: str | None,
        job_id: str | None,
        actor: str,
        event: str,
        counting: Sequence[str],
        observing: Mapping[Histogram, float] | None,
        /,
        **detail: Any,
    ) -> None:
        """Write the entry `event` and, in the same round trip, add one to each counter in
        `counting` and record the observations in `observing`."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self._queue_log(pipe, ref, job_id, actor, event, detail)
            queue_counts(pipe, counting, observing)
            await pipe.execute()
        echo(event, ref, job_id, actor, detail)

    def _queue_log(
        self,
        pipe: Pipeline,
        ref: str | None,
        job_id: str | None,
        actor: str,
        event: str,
        detail: Mapping[str, Any],
    ) -> None:
        entry: dict[FieldT, EncodableT] = {
            "ts": time.time(),
            "actor": actor,
            "event": event,
            "ref": ref or "",
            "job_id": job_id or "",
            "detail": json.dumps(detail, default=str),
        }
        if ref:
            pipe.xadd(self.log_key(ref), entry, maxlen=JOB_LOG_MAXLEN, approximate=True)
        pipe.xadd(GLOBAL_LOG, entry, maxlen=GLOBAL_LOG_MAXLEN, approximate=True)

    async def job_log(self, ref: str) -> list[LogEntry]:
        return [LogEntry.from_redis(i, e) for i, e in await self.redis.xrange(self.log_key(ref))]

    async def latest_log(self, count: int) -> list[LogEntry]:
        """The last `count` global entries, oldest first."""
        rows = await self.redis.xrevrange(GLOBAL_LOG, count=count)
        return [LogEntry.from_redis(i, e) for i, e in reversed(rows)]

    async def follow_log(self, after: str, *, block_ms: int, count: int = 100) -> list[LogEntry]:
        """Global entries after the stream id `after`, waiting up to `block_ms` for the first:
        one blocking XREAD, no polling loop."""
        answer = await self.redis.xread({GLOBAL_LOG: after}, count=count, block=block_ms)
        return [LogEntry.from_redis(i, e) for _, rows in answer for i, e in rows]

    async def last_log_id(self) -> str:
        """The id of the newest global entry ('0-0' if none): where "from now on" begins. A
        reader that waited on `$` instead would miss what arrives between two of its reads."""
        rows = await self.redis.xrevrange(GLOBAL_LOG, count=1)
        return text(rows[0][0]) or "0-0" if rows else "0-0"

    async def global_log(self, *, after: str = "-", count: int = 100) -> list[LogEntry]:
        start = f"({after}" if after != "-" else "-"
        rows = await self.redis.xrange(GLOBAL_LOG, min=start, count=count)
        return [LogEntry.from_redis(i, e) for i, e in rows]


def queue_counts(
    pipe: Pipeline, names: Iterable[str], observe: Mapping[Histogram, float] | None
) -> None:
    for name in names:
        pipe.hincrby(STATS, name, 1)
    for histogram, value in (observe or {}).items():
        measure(pipe, histogram, value)


def echo(
    event: str, ref: str | None, job_id: str | None, actor: str, detail: Mapping[str, Any]
) -> None:
    """The log entry as one structlog line; a detail named like a line's own field is prefixed."""
    fields = {(f"detail_{k}" if k in RESERVED else k): v for k, v in detail.items()}
    level = log.warning if event in WARNINGS else log.info
    level(event, ref=ref or None, job_id=job_id or None, actor=actor, **fields)


def move_fields(status: Status, fields: dict[str, Any]) -> str:
    """The fields a move to `status` sets, as the JSON object `MOVE` takes."""
    if status == Status.COMPLETED:
        fields.setdefault("completed_at", time.time())  # when the landing deadline starts
    if status in TERMINAL:
        # Owed until published; set with the move itself so a crash cannot lose it.
        fields["pending_event"] = "job.landed" if status == Status.LANDED else "job.failed"
    return json.dumps(
        {
            name: value if isinstance(value, str) else json.dumps(value)
            for name, value in fields.items()
        }
    )


@functools.lru_cache(maxsize=16)
def script_config(retention: float, job_id_index: str) -> str:
    """The ledger's script config (see `MOVE`) as JSON, made once per retention."""
    return json.dumps(
        {
            "ranks": RANKS,
            "terminal": TERMINALS,
            "by_status": BY_STATUS,
            "global_log": GLOBAL_LOG,
            "job_log_max": JOB_LOG_MAXLEN,
            "global_log_max": GLOBAL_LOG_MAXLEN,
            "retention": round(retention),
            "job_id_index": job_id_index,
            "jobs": Ledger.job_key(""),
            "logs": Ledger.log_key(""),
            "objects": Ledger.objects_key(""),
            "poll_set": POLL_SET,
            "stats": STATS,
            "rejected": REJECTED,
        }
    )
