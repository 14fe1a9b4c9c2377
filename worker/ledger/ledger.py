"""The job ledger in Redis: one hash per submission, an index by Apiframe job id, and job logs.

Every state change runs as one Lua script (`lua/move.lua`), so concurrent webhooks, workers and
pollers agree on an order and a state only moves forward; the log entry for a change is written
in the same script.
"""

import functools
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis

from worker import metrics
from worker.apiframe.models import IDEMPOTENCY_WINDOW
from worker.ledger import keys
from worker.ledger.admission import Admission
from worker.ledger.archive import Archive, Archived, ArchiveMissing
from worker.ledger.keys import is_ref
from worker.ledger.log import (
    GLOBAL_LOG_MAXLEN,
    JOB_LOG_MAXLEN,
    LogReader,
    Noted,
    echo,
    queue_entry,
)
from worker.ledger.marks import Marks
from worker.ledger.paging import Page, PageQuery, read_page
from worker.ledger.records import JobRecord, StoredObject, decoded, pairs, text
from worker.ledger.scripts import source
from worker.status import FINAL, RANK, Status
from worker.traces import traceparent

DEFAULT_RETENTION = 30 * 24 * 3600
log = structlog.get_logger("ledger")
NO_ARCHIVE = "set IMAGEDOCK_S3_* here: compacted jobs are shown from their summaries"
WARNED: list[str] = []
UNSENT_RETENTION = 24 * 3600  # a finished job that never reached Apiframe: kept a day


class Conflict(Exception):
    """The same caller Idempotency-Key came with a different request."""


@dataclass(frozen=True)
class Attached:
    job_id: str  # the job id the submission now has ('' if none)
    early: dict[str, Any] | None  # what a webhook said before the id was attached
    owner: str  # on conflict, the ref that already owns the job id


class Ledger:
    def __init__(
        self,
        redis: Redis,
        *,
        retention: float = DEFAULT_RETENTION,
        archive: Archive | None = None,
    ) -> None:
        self.redis = redis
        self.retention = retention
        self.archive = archive  # where compacted jobs are read back from: none, no S3
        self.history = LogReader(redis, archive)
        self.marks = Marks(redis)
        self._transition = redis.register_script(source("transition"))
        self._attach = redis.register_script(source("attach"))
        self._stash = redis.register_script(source("stash"))
        self._page = redis.register_script(source("page"))
        self._create = redis.register_script(source("create"))
        self._find = redis.register_script(source("find"))

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
        lineage: Mapping[str, str] | None = None,
        caller: str | None = None,
        callback: Mapping[str, str] | None = None,
        admission: Admission | None = None,
    ) -> tuple[JobRecord, bool]:
        """A new record, or the one an earlier call with `idempotency_key` (or for `ref`) made.
        `lineage` says what made the job, past `images/generate`: its `operation`, and for an
        action its `action` and `parent_job_id`. A `/v2/` caller's job names its `caller`, and
        its `callback` (`callback_url`, `callback_events`) if it asked for webhooks. A job with an
        `admission` is made only if its caller may queue it (`QueueFull`, `OverBudget`)."""
        ref = ref or uuid.uuid4().hex  # one given may be named by two requests at once
        now = time.time()
        what: list[Any] = [prompt, model, params, metadata, *([lineage] if lineage else [])]
        what += [caller, callback] if caller else []
        fingerprint = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
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
            **(lineage or {}),
            **({"claim": idempotency_key} if idempotency_key else {}),
            **({"caller": caller} if caller else {}),
            **(callback or {}),
            **({"trace": trace} if (trace := traceparent()) else {}),
        }
        if idempotency_key is not None:
            claim = keys.idempotency(idempotency_key)
            # Kept as long as Apiframe honours the key imagedock derives from this record.
            if not await self.redis.set(claim, ref, nx=True, ex=IDEMPOTENCY_WINDOW):
                held = text(await self.redis.get(claim)) or ""
                # A claim for this very ref with no record is a create that died between the
                # two writes (or a retried SET): go on and make the record it claimed.
                if held != ref or await self.redis.exists(keys.job(ref)):
                    return await self._earlier(held, fingerprint)
            elif await self.redis.exists(keys.job(ref)):  # a derived ref outlived its claim
                return await self._earlier(ref, fingerprint)
        said = {"source": source, **({"caller": caller} if caller else {})}
        # One script: the record, its indexes, its count and its entry, or nothing if another
        # request made the record for this ref first.
        made = await self._create(
            args=[
                self.script_config(),
                ref,
                json.dumps({name: str(value) for name, value in fields.items()}),
                job_id or "",
                caller or "",
                json.dumps(said),
                now,
                admission.script_arg() if admission else "",
            ]
        )
        if isinstance(made, list):
            assert admission is not None
            if idempotency_key is not None:  # refused, the key is free: its claim goes too
                await self.redis.delete(keys.idempotency(idempotency_key))
            raise admission.refused(made)
        if not int(made):
            return await self._earlier(ref, fingerprint)
        echo("job.created", ref, job_id, "receiver", said)
        # The record as just written: read back, it would say the same, a round trip later.
        written = {name: str(value) for name, value in fields.items()}
        if job_id:
            written.update(job_id=job_id, submitted_at=str(now))
        return JobRecord.from_redis(written, []), True

    async def _earlier(self, ref: str, fingerprint: str) -> tuple[JobRecord, bool]:
        earlier = await self.get(ref)
        if earlier is None:
            raise Conflict("that Idempotency-Key is still being processed")
        if earlier.fingerprint != fingerprint:
            raise Conflict("that Idempotency-Key was used with a different request")
        return earlier, False

    async def get(self, ref: str, *, whole: bool = True) -> JobRecord | None:
        """The record; a compacted one read back whole from its timeline, or, with `whole`
        False, as its summary (its status, job id, model, prompt and times)."""
        # In one transaction: a compaction between the two reads would show no objects.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.job(ref))
            pipe.hgetall(keys.objects(ref))
            raw, objects = await pipe.execute()
        return await self._record(raw, objects, whole=whole)

    async def ref_for(self, job_id: str) -> str | None:
        return text(await self.redis.get(keys.job_id(job_id)))

    async def by_job_id(self, job_id: str, *, whole: bool = True) -> JobRecord | None:
        found = await self._find(args=[self.script_config(), job_id])
        if not found:
            return None
        return await self._record(pairs(found[1]), pairs(found[2]), whole=whole)

    async def _record(
        self, raw: dict[Any, Any], objects: dict[Any, Any], *, whole: bool = True
    ) -> JobRecord | None:
        if not raw:
            return None
        found = [text(v) or "" for v in objects.values()]
        return await self._resolve(decoded(raw), found, whole=whole)

    async def _resolve(
        self, fields: dict[str, str], objects: list[str], *, whole: bool = True
    ) -> JobRecord:
        """The record in a job's hash and its objects; a compacted job's from its timeline in
        S3, with whatever Redis learned of it since (`worker.ledger.compaction`). S3 out of
        reach raises `TransientError`; a timeline gone from S3 leaves the summary, and says so."""
        archived_at = fields.pop("archive", None)
        stored = [StoredObject.from_json(raw or "{}") for raw in objects]
        if archived_at and whole:
            try:
                archived = await self._archived(archived_at)
            except ArchiveMissing as exc:
                log.warning("ledger.timeline_missing", ref=fields.get("ref"), error=str(exc))
                archived = None
            if archived is not None:
                fields = {**archived.fields, **fields}
                earlier = [StoredObject.from_json(raw) for raw in archived.objects.values()]
                stored = list({o.index: o for o in [*earlier, *stored]}.values())
        return JobRecord.from_redis(fields, stored)

    async def _archived(self, key: str) -> Archived | None:
        if self.archive is None:
            if not WARNED:  # once a process: every read of a compacted job would say it
                WARNED.append(key)
                log.warning("ledger.no_archive", advice=NO_ARCHIVE)
            return None
        return await self.archive.read(key)

    async def find(self, id_or_ref: str) -> JobRecord | None:
        """A record by Apiframe job id or by imagedock ref, written bare or as the UUID
        (`/v2/`'s job id) it is."""
        found = await self.by_job_id(id_or_ref) or await self.get(id_or_ref)
        if found is None and len(id_or_ref) == 36 and is_ref(id_or_ref.replace("-", "")):
            found = await self.get(id_or_ref.replace("-", ""))
        return found

    async def forget_older(self, now: float) -> int:
        """Trim the indexes of records past the retention (their keys expired by then)."""
        models = await self.redis.smembers(keys.MODELS_SEEN)  # type: ignore[misc]
        callers = await self.redis.smembers(keys.CALLERS_SEEN)  # type: ignore[misc]
        indexes = [keys.by_status(status.value) for status in Status]
        indexes += [keys.by_model(text(model) or "") for model in models]
        indexes += [keys.by_caller(text(caller) or "") for caller in callers]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(keys.BY_TIME, "-inf", now - self.retention)
            for index in indexes:
                pipe.zremrangebyscore(index, "-inf", now - self.retention)
            trimmed, *_ = await pipe.execute()
        return int(trimmed)

    async def page(self, query: PageQuery) -> Page:
        """One page of records, newest first, in one script call: see `worker.ledger.paging`."""
        if query.caller is not None:  # a caller's jobs are the fewest to pass over
            index = keys.by_caller(query.caller)
        elif query.status is not None:
            index = keys.by_status(query.status.value)
        else:
            index = keys.BY_TIME if query.model is None else keys.by_model(query.model)
        prefixes = {"job_prefix": keys.JOB, "objects_prefix": keys.OBJECTS}
        return await read_page(self._page, query, index=index, resolve=self._resolve, **prefixes)

    # Changing records.

    async def attach(self, ref: str, job_id: str) -> Attached:
        """Record Apiframe's job id once; never one that another submission already owns."""
        attached, early, owner = await self._attach(
            keys=[keys.job(ref), keys.job_id(job_id)], args=[job_id, time.time(), ref]
        )
        early_text = text(early)
        return Attached(
            text(attached) or "", json.loads(early_text) if early_text else None, text(owner) or ""
        )

    async def stash_early(
        self, ref: str, job_id: str, status: str, signed: bool
    ) -> tuple[str, bool]:
        """Keep what a webhook says of a submission with no job id yet (a few fields, never the
        body): the job id if the submission has one by now, and whether this was news."""
        early = json.dumps({"jobId": job_id, "status": status, "signed": signed})
        attached, kept = await self._stash(
            keys=[keys.job(ref)], args=[early, "1" if signed else "0"]
        )
        return text(attached) or "", bool(int(kept))

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
        return await self._move(ref, status, actor, progress, fields) is not None

    async def move_and_read(
        self, ref: str, status: Status, actor: str, **fields: Any
    ) -> JobRecord | None:
        """Move forward to `status` as `transition` does, and answer the record as the move left
        it, in the same call; None if it did not move."""
        moved = await self._move(ref, status, actor, None, fields, read=True)
        return moved if isinstance(moved, JobRecord) else None

    async def _move(
        self,
        ref: str,
        status: Status,
        actor: str,
        progress: int | None,
        fields: dict[str, Any],
        *,
        read: bool = False,
    ) -> JobRecord | bool | None:
        applied, current, job_id, *after = await self._transition(
            args=[
                self.script_config(),
                ref,
                status.value,
                "" if progress is None else progress,
                actor,
                time.time(),
                move_fields(status, fields),
                "1" if read else "",
            ],
        )
        if int(applied) == 1:
            echo("status.changed", ref, text(job_id), actor, {"from": text(current), "to": status})
        if int(applied) <= 0:
            return None
        return record_of(pairs(after[0]), pairs(after[1])) if after else True

    def script_config(self) -> str:
        """What the ledger's scripts need to know of it, as JSON; made again only when the
        retention changes."""
        return script_config(self.retention)

    async def schedule_poll(self, ref: str, at: float, *, only_if_tracked: bool = False) -> None:
        await self.redis.zadd(keys.POLL_SET, {ref: at}, xx=only_if_tracked)

    async def count_failure(self, ref: str) -> int:
        """One more failed landing attempt for the job; returns how many so far."""
        return int(await self.redis.hincrby(keys.job(ref), "landing_failures", 1))  # type: ignore[misc]

    async def count(
        self, *counted: metrics.Counted, observe: Mapping[metrics.Histogram, float] | None = None
    ) -> None:
        """Add one to each counter, and record the observations, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            metrics.queue_counts(pipe, counted, observe)
            await pipe.execute()

    async def set_fields(self, ref: str, **fields: str | float) -> None:
        await self.redis.hset(keys.job(ref), mapping=dict(fields))  # type: ignore[misc]

    async def clear_fields(self, ref: str, *names: str) -> None:
        await self.redis.hdel(keys.job(ref), *names)  # type: ignore[misc]

    async def add_object(
        self,
        ref: str,
        job_id: str,
        stored: StoredObject,
        actor: str,
        event: str,
        /,
        *,
        counting: tuple[metrics.Counted, ...] = (),
        noted: tuple[Noted, ...] = (),
        **detail: Any,
    ) -> None:
        """Record a stored object, write the entries `noted` on the way and its own entry
        `event`, and add one to each counter in `counting`, in one round trip."""
        async with self.redis.pipeline(transaction=True) as pipe:
            # EVAL, not EVALSHA: a pipeline's script would cost a SCRIPT EXISTS round trip.
            names = [keys.objects(ref), keys.job(ref)]
            pipe.eval(source("add_object"), len(names), *names, str(stored.index), stored.to_json())
            for earlier in noted:
                queue_entry(pipe, ref, job_id, actor, earlier.event, earlier.detail, earlier.ts)
            queue_entry(pipe, ref, job_id, actor, event, detail, keep=self.retention)
            metrics.queue_counts(pipe, counting, None)
            await pipe.execute()
        for earlier in noted:
            echo(earlier.event, ref, job_id, actor, earlier.detail)
        echo(event, ref, job_id, actor, detail)

    # Writing the job log.

    async def log(
        self,
        ref: str | None,
        job_id: str | None,
        actor: str,
        event: str,
        /,
        *,
        counting: tuple[metrics.Counted, ...] = (),
        observing: Mapping[metrics.Histogram, float] | None = None,
        **detail: Any,
    ) -> None:
        """Write the entry `event` and, in the same round trip, add one to each counter in
        `counting` and record the observations in `observing`."""
        async with self.redis.pipeline(transaction=True) as pipe:
            queue_entry(pipe, ref, job_id, actor, event, detail, keep=self.retention)
            metrics.queue_counts(pipe, counting, observing)
            await pipe.execute()
        echo(event, ref, job_id, actor, detail)


def record_of(raw: dict[Any, Any], objects: dict[Any, Any]) -> JobRecord | None:
    """The record in a job's hash and its objects' hash, as Redis answered them (a job that
    moves is never a compacted one)."""
    if not raw:
        return None
    return JobRecord.from_redis(
        decoded(raw), [StoredObject.from_json(text(value) or "{}") for value in objects.values()]
    )


def move_fields(status: Status, fields: dict[str, Any]) -> str:
    """The fields a move to `status` sets, as the JSON object `move.lua` takes."""
    if status == Status.COMPLETED:
        fields.setdefault("completed_at", time.time())  # when the landing deadline starts
    if status in FINAL:
        # Owed until published; set with the move itself so a crash cannot lose it.
        fields["pending_event"] = "job.landed" if status == Status.LANDED else "job.failed"
    return json.dumps({name: field_text(value) for name, value in fields.items()})


def field_text(value: Any) -> str:
    """A field's value as the record holds it: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    if type(value) in (int, float):  # JSON's own spelling, without a trip through the encoder
        return repr(value)
    return json.dumps(value)


@functools.lru_cache(maxsize=16)
def script_config(retention: float) -> str:
    """The ledger's script config (`c` in every script) as JSON, made once per retention."""
    return json.dumps(
        {
            "ranks": {status.value: rank for status, rank in RANK.items()},
            "final": {status.value: True for status in FINAL},
            "job": keys.JOB,
            "job_log": keys.JOB_LOG,
            "objects": keys.OBJECTS,
            "job_id": keys.JOB_ID,
            "by_status": keys.BY_STATUS,
            "global_log": keys.GLOBAL_LOG,
            "poll_set": keys.POLL_SET,
            "compact": keys.COMPACT,
            "by_time": keys.BY_TIME,
            "by_model": keys.BY_MODEL,
            "models_seen": keys.MODELS_SEEN,
            "by_caller": keys.BY_CALLER,
            "callers_seen": keys.CALLERS_SEEN,
            "waiting": keys.WAITING,
            "waiting_callers": keys.WAITING_CALLERS,
            "arrivals": keys.ARRIVALS,
            "sending": keys.SENDING,
            "in_flight": keys.IN_FLIGHT,
            "in_flight_of": keys.IN_FLIGHT_OF,
            "pace": keys.PACE,
            "credits_day": keys.CREDITS_DAY,
            "credit_costs": keys.CREDIT_COSTS,
            "stats": keys.STATS,
            "job_log_max": JOB_LOG_MAXLEN,
            "global_log_max": GLOBAL_LOG_MAXLEN,
            "retention": round(retention),
            "unsent_retention": round(min(retention, UNSENT_RETENTION)),
            "counters": metrics.script_fields(),
        }
    )
