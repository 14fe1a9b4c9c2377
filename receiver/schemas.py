"""What imagedock's API answers, as pydantic models: the handlers build their answers through
them, and `/openapi.json` is generated from them, so the document cannot drift from the code."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator
from pydantic.alias_generators import to_camel

from worker.apiframe.models import JobId
from worker.callers import OPERATOR
from worker.ledger.log import LOG_ID_PATTERN, LogEntry, is_log_id
from worker.ledger.records import JobRecord, StoredObject
from worker.replays import Filter
from worker.status import FINAL, Status


class Answer(BaseModel):
    """A JSON answer; fields are camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Problem(Answer):
    """Every refusal: what is wrong, and per field where a request had the wrong shape."""

    error: str
    details: dict[str, Any] | None = None


class Health(Answer):
    ok: bool


class JobAccepted(Answer):
    job_id: str | None
    ref: str
    status: Status


class BatchOutcome(Answer):
    """One job of a batch: accepted (`ref`, `jobId`, `status`) or refused (`error`, `details`,
    and `code`: what `POST /jobs` would have answered it with)."""

    ref: str | None = Field(default=None, exclude_if=lambda value: value is None)
    job_id: str | None = None
    status: Status | None = Field(default=None, exclude_if=lambda value: value is None)
    error: str | None = Field(default=None, exclude_if=lambda value: value is None)
    details: dict[str, Any] | None = Field(default=None, exclude_if=lambda value: value is None)
    code: int | None = Field(default=None, exclude_if=lambda value: value is None)


class BatchAccepted(Answer):
    jobs: list[BatchOutcome] = Field(description="each job's outcome, in the batch's order")
    accepted: int
    refused: int


class ObjectView(Answer):
    index: int
    kind: str = Field(description="image, grid, video, audio (a track), cover or stem")
    track_id: str | None = Field(default=None, exclude_if=lambda value: value is None)
    bucket: str
    key: str
    sha256: str
    bytes: int
    content_type: str
    source_url: str
    url: str | None = Field(
        default=None,
        description="a presigned GET URL, only with ?presign=SECONDS",
        exclude_if=lambda url: url is None,
    )

    @classmethod
    def of(cls, stored: StoredObject, url: str | None = None) -> "ObjectView":
        return cls(
            index=stored.index,
            kind=stored.kind,
            track_id=stored.track_id,
            bucket=stored.bucket,
            key=stored.key,
            sha256=stored.sha256,
            bytes=stored.bytes,
            content_type=stored.content_type,
            source_url=stored.source_url,
            url=url,
        )


class JobView(Answer):
    ref: str
    job_id: str | None
    status: Status
    model: str
    prompt: str
    params: dict[str, Any]
    metadata: dict[str, str]
    source: str
    progress: int | None
    operation: str = Field(description="the Apiframe route that made the job")
    action: str | None = Field(default=None, exclude_if=lambda value: value is None)
    parent_job_id: str | None = Field(default=None, exclude_if=lambda value: value is None)
    resubmitted_from: str | None = Field(
        default=None,
        description="the ref of the job this one was made again from (a bulk resubmit)",
        exclude_if=lambda value: value is None,
    )
    result_urls: list[str] = Field(description="every file the finished job named, in order")
    objects: list[ObjectView]
    error: str | None
    created_at: float
    submitted_at: float | None
    updated_at: float
    last_webhook_at: float | None
    via: str | None = Field(description="how imagedock learned the job finished: webhook or poll")
    caller: str = Field(description="who submitted it: a `/v2/` caller's name, or the operator")
    credit_cost: int | None = Field(description="the credits Apiframe charged, once it said")

    @classmethod
    def of(
        cls, record: JobRecord, urls: dict[str, str] | None = None, *, clip: int | None = None
    ) -> "JobView":
        urls = urls or {}
        prompt = record.prompt
        if clip is not None and len(prompt) > clip:
            prompt = prompt[:clip] + "…"
        return cls(
            ref=record.ref,
            job_id=record.job_id,
            status=record.status,
            model=record.model,
            prompt=prompt,
            params=record.params,
            metadata=record.metadata,
            source=record.source,
            progress=record.progress,
            operation=record.operation,
            action=record.action,
            parent_job_id=record.parent_job_id,
            resubmitted_from=record.resubmitted_from,
            result_urls=[asset.url for asset in record.assets],
            objects=[ObjectView.of(stored, urls.get(stored.key)) for stored in record.objects],
            error=record.error,
            created_at=record.created_at,
            submitted_at=record.submitted_at,
            updated_at=record.updated_at,
            last_webhook_at=record.last_webhook_at,
            via=record.via,
            caller=record.caller or OPERATOR,
            credit_cost=record.credit_cost,
        )


class JobPage(Answer):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")
    has_more: bool


class LogPage(Answer):
    entries: list[LogEntry]  # each as the log holds it: `id` is the stream id (?after=)


class Stats(Answer):
    """Counts since Redis began keeping them, and records per status within the retention."""

    submitted: int
    landed: int
    failed: int = Field(description="failed, cancelled or timed out")
    cancelled: int = Field(description="records CANCELLED, within the retention")
    timed_out: int = Field(description="records TIMED_OUT, within the retention")
    via_poll: int = Field(description="jobs landed through polling: their webhook never came")
    webhooks_rejected: dict[str, int]
    dead_letters: int
    unfinished: int
    by_status: dict[Status, int]
    credits_spent: int = Field(description="credits Apiframe charged for the jobs landed")
    credits_by_caller: dict[str, int]
    credits_by_model: dict[str, int]
    waiting: int = Field(description="jobs accepted and not yet sent to Apiframe")
    waiting_by_caller: dict[str, int]
    in_flight: int = Field(description="jobs sent to Apiframe and not yet finished there")
    submit_rate: float = Field(description="submits a second in force")
    submit_pace: str = Field(description="why submitting is slower than its limit, if it is")
    credits_today: dict[str, float] = Field(
        description="per capped caller, the credits its jobs hold or spent this UTC day"
    )


class TrackAccepted(JobAccepted):
    pass


class ReplayQueued(Answer):
    job_id: str
    queued: bool


class DeadLetters(Answer):
    dead_letters: list[dict[str, Any]]
    offset: int
    limit: int


class Redriven(Answer):
    redriven: int


class WebhookAnswer(Answer):
    model_config = ConfigDict(**Answer.model_config, frozen=True)  # hashable: rendered once

    accepted: bool
    early: bool | None = Field(default=None, description="kept until the submission is recorded")
    confirming: bool | None = Field(default=None, description="unsigned: a confirmation was queued")
    queued: bool | None = Field(default=None, description="completed: the landing was queued now")

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# Queries and request bodies.


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


def unix_time(value: Any) -> Any:
    """A number in a query's text, in any notation (`-5e-324`), as the number it is: pydantic
    reads a datetime from a number, not from every text of one."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# ISO 8601 or Unix time (seconds; pydantic reads numbers past 2e10 as milliseconds), and
# documented as either.
Moment = Annotated[
    datetime,
    BeforeValidator(unix_time),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "number", "minimum": -62135596800000, "maximum": 253402300799999},
            ]
        }
    ),
]


class JobsQuery(Query):
    status: Status | None = None
    model: str | None = Field(default=None, max_length=100)
    q: str | None = Field(
        default=None, max_length=200, description="text in the prompt, ids or error"
    )
    since: Moment | None = Field(
        default=None, description="created at or after: ISO 8601 or Unix time"
    )
    until: Moment | None = Field(default=None, description="created at or before")
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(
        default=None, max_length=500, description="nextCursor of the last page"
    )
    presign: int | None = Field(default=None, ge=1, le=7 * 24 * 3600, description="seconds")


class JobQuery(Query):
    presign: int | None = Field(default=None, ge=1, le=7 * 24 * 3600, description="seconds")


class LogQuery(Query):
    after: str | None = Field(
        default=None,
        pattern=f"^({LOG_ID_PATTERN}|-)$",
        description="the id of the last entry seen, or - for the first",
    )
    limit: int = Field(default=100, ge=1, le=1000)

    @field_validator("after")
    @classmethod
    def readable(cls, value: str | None) -> str | None:
        if value is not None and value != "-" and not is_log_id(value):
            raise ValueError("must be a log entry id, like 1700000000000-0")
        return value


class DeadLetterQuery(Query):
    offset: int = Field(default=0, ge=0, le=1_000_000_000)
    limit: int = Field(default=100, ge=1, le=1000)


class TrackRequest(Query):
    job_id: JobId = Field(alias="jobId", description="the Apiframe job UUID")


class BulkReplayRequest(BaseModel):
    """`POST /jobs/replay`: which jobs, and whether to land them again or make them again."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    status: Status = Field(description="the jobs' status now")
    since: Moment = Field(description="created at or after: ISO 8601 or Unix time")
    until: Moment | None = Field(default=None, description="created at or before")
    model: str | None = Field(default=None, min_length=1, max_length=100)
    resubmit: bool = Field(
        default=False,
        description="make each job again as a new job naming it (`resubmittedFrom`); "
        "otherwise land each again and send its events again",
    )
    dry_run: bool = Field(default=False, description="count the jobs selected, do nothing")
    priority: Literal["high", "normal", "low"] = Field(
        default="low", description="resubmitted jobs' place among their callers' own"
    )

    def refusal(self) -> str | None:
        """What is wrong with the request that its shape cannot say; said of `status`."""
        if self.resubmit and self.status not in FINAL:
            return f"a resubmit takes jobs that have ended, not {self.status.value} ones"
        return None

    def filter(self) -> Filter:
        """The jobs asked for; a time without a zone is UTC's."""
        until = utc_seconds(self.until) if self.until else None
        return Filter(self.status, utc_seconds(self.since), until, self.model)


def utc_seconds(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class BulkReplayView(Answer):
    id: str | None = Field(description="null for a dry run")
    filter: str = Field(description="the jobs selected, in words")
    resubmit: bool
    selected: int
    done: int = 0
    counts: dict[str, int] = Field(
        default_factory=dict,
        description="jobs by outcome: replayed, resubmitted, skipped (never at Apiframe, "
        "replayed in the last minute, or not submitted by imagedock), refused (a resubmit past "
        "a cap, or of a parent gone), gone, error",
    )
    created_at: float | None = None
    finished_at: float | None = None
    finished: bool = False
