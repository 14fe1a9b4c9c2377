"""imagedock's own API: submit jobs, read their ledger records and their logs."""

import json
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.admission import Busy
from receiver.bodies import API_BODY, BodyRefused, read_capped
from receiver.queries import BadQuery, query_of
from receiver.responses import error, not_admitted
from receiver.schemas import (
    JobAccepted,
    JobPage,
    JobQuery,
    JobsQuery,
    JobView,
    LogPage,
    LogQuery,
)
from receiver.state import deps_of, lists_of
from receiver.stream import log_stream, wants_stream
from worker.apiframe import (
    ApiframeRequest,
)
from worker.deps import Deps
from worker.ledger.admission import NotAdmitted
from worker.ledger.ledger import Conflict
from worker.ledger.paging import BadCursor, PageQuery
from worker.ledger.records import JobRecord
from worker.ledger.waiting import Priority
from worker.references import BadReference
from worker.submission import BadParent, NotWaiting, accept_job, cancel_waiting
from worker.validation import field_problems

METADATA_BYTES = 4 * 1024  # what a record keeps of a caller's metadata, and sends in events
PARAMS_BYTES = 8 * 1024
PRESIGN_MOST = 500  # objects an answer presigns; past them, an object comes without a URL
LIST_PROMPT = 300  # characters of a prompt a job list shows; `GET /jobs/{id}` shows it whole
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=1024)]


def hide_webhook_fields(schema: dict[str, Any]) -> None:
    """Webhooks are imagedock's to set: the document does not offer them."""
    for name in ("webhook_url", "webhook_events"):
        schema.get("properties", {}).pop(name, None)


class JobRequest(ApiframeRequest):
    """`POST /jobs`: a submission plus the caller's metadata, which comes back in every event.
    What the record keeps is capped: metadata at 4 KiB and params at 8 KiB, as JSON."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=hide_webhook_fields)

    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict, max_length=32, description="at most 4 KiB as JSON"
    )
    priority: Literal["high", "normal", "low"] = Field(
        default="normal", description="what goes first among the caller's own waiting jobs"
    )

    @model_validator(mode="after")
    def _kept_small(self) -> "JobRequest":
        for name, value, most in (
            ("metadata", self.metadata, METADATA_BYTES),
            ("params", self.params, PARAMS_BYTES),
        ):
            size = len(json.dumps(value or {}).encode())
            if size > most:
                raise ValueError(f"{name} is {size} bytes as JSON; at most {most} are kept")
        return self


async def jobs(request: Request) -> Response:
    """`/jobs`: one route for both methods, so that a 405 there names both in its Allow."""
    return await (create_job(request) if request.method == "POST" else list_jobs(request))


async def create_job(request: Request) -> Response:
    try:
        deadline = deps_of(request).settings.body_deadline
        job = JobRequest.model_validate_json(await read_capped(request, API_BODY, deadline))
    except BodyRefused as exc:
        return error(exc.status, exc.message)
    except ValidationError as exc:
        return error(400, "invalid job request", details=field_problems(exc))
    if job.webhook_url is not None or job.webhook_events is not None:
        return error(400, "webhooks are imagedock's to set; leave webhookUrl and webhookEvents out")
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        return error(400, "Idempotency-Key must be 1 to 255 characters")
    try:  # a JobRequest is the submission, with the metadata and priority beside it
        record = await accept_job(
            deps_of(request).submitting,
            job,
            metadata=job.metadata,
            idempotency_key=key,
            priority=Priority[job.priority],
        )
    except BadParent as exc:
        return error(400, "invalid job request", details={"parentJobId": str(exc)})
    except BadReference as exc:
        return error(400, "invalid job request", details={exc.field: str(exc)})
    except Conflict as exc:
        return error(409, str(exc))
    except NotAdmitted as exc:
        return not_admitted(exc)
    accepted = JobAccepted(job_id=record.job_id, ref=record.ref, status=record.status)
    return JSONResponse(accepted.body(), 202)


async def job(request: Request) -> Response:
    """`/jobs/{id}`: one route for both methods, so that a 405 there names both in its Allow."""
    return await (get_job(request) if request.method == "GET" else cancel(request))


async def cancel(request: Request) -> Response:
    """`DELETE /jobs/{id}`: a job still in imagedock's queue ends CANCELLED, never sent to
    Apiframe, with a `job.failed` event saying so; one Apiframe has is a 409."""
    deps = deps_of(request)
    record = await deps.ledger.find(request.path_params["job_id"])
    if record is None:
        return error(404, "no such job or ref")
    try:
        record = await cancel_waiting(deps.submitting, record, "receiver")
    except NotWaiting as exc:
        return error(409, str(exc))
    views = await views_of(deps, [record], None)
    return JSONResponse(views[0].body())


async def get_job(request: Request) -> Response:
    """`GET /jobs/{id}`: a record by Apiframe job id or ref, with presigned URLs if asked."""
    query = query_of(request, JobQuery)
    deps = deps_of(request)
    record = await deps.ledger.find(request.path_params["job_id"])
    if record is None:
        return error(404, "no such job or ref")
    views = await views_of(deps, [record], query.presign)
    return JSONResponse(views[0].body())


async def list_jobs(request: Request) -> Response:
    """`GET /jobs`: newest first, filtered, a page at a time."""
    query = query_of(request, JobsQuery)
    deps = deps_of(request)
    wanted = PageQuery(
        limit=query.limit,
        status=query.status,
        model=query.model,
        text=query.q,
        since=query.since,
        until=query.until,
        cursor=query.cursor,
    )
    try:
        async with lists_of(request).place():
            page = await deps.ledger.page(wanted)
            jobs = await views_of(deps, page.records, query.presign, clip=LIST_PROMPT)
    except BadCursor as exc:
        return error(400, str(exc), details={"cursor": str(exc)})
    except Busy as exc:
        return error(429, f"job lists: {exc}", headers={"Retry-After": "1"})
    return JSONResponse(
        JobPage(jobs=jobs, next_cursor=page.next_cursor, has_more=page.has_more).body()
    )


async def views_of(
    deps: Deps, records: list[JobRecord], presign: int | None, *, clip: int | None = None
) -> list[JobView]:
    """The records as the API shows them; with `presign`, each object with a URL that lasts
    that many seconds (signed in one call, never logged), the first `PRESIGN_MOST` of them;
    with `clip`, prompts cut to that many characters."""
    urls: dict[str, str] = {}
    if presign is not None:
        if deps.object_store is None:
            raise BadQuery({"presign": "this receiver has no S3 bucket configured"})
        keys = [stored.key for record in records for stored in record.objects]
        urls = await deps.object_store.presign(keys[:PRESIGN_MOST], presign)
    return [JobView.of(record, urls, clip=clip) for record in records]


async def job_log(request: Request) -> Response:
    ledger = deps_of(request).ledger
    record = await ledger.find(request.path_params["job_id"])
    if record is None:
        return error(404, "no such job or ref")
    entries = await ledger.history.job(record.ref)
    return JSONResponse(LogPage(entries=entries).body())


async def global_log(request: Request) -> Response:
    """Every log entry in order; pass the last `id` seen as `after` to follow it, or ask for
    `text/event-stream` to have new entries pushed."""
    if wants_stream(request):
        return await log_stream(request)
    query = query_of(request, LogQuery)
    ledger = deps_of(request).ledger
    entries = await ledger.history.after(query.after or "-", count=query.limit)
    return JSONResponse(LogPage(entries=entries).body())
