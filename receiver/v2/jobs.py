"""`GET /v2/jobs/{id}` and `GET /v2/jobs`: the caller's own jobs as Apiframe's job objects
(`worker.callers.jobs`), another caller's a 404 as Apiframe answers one. The URLs in a result
are presigned afresh on every read and last `IMAGEDOCK_PRESIGN_TTL` seconds."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.admission import Busy
from receiver.state import deps_of, lists_of
from receiver.v2.access import refusal
from worker.callers.jobs import MEANT, job_object, ref_of
from worker.deps import Deps
from worker.ledger.paging import BadCursor, PageQuery
from worker.ledger.records import JobRecord
from worker.sinks.body import event_id
from worker.sinks.callback import NAME as CALLBACKS
from worker.sinks.callback import wants
from worker.sinks.delivery import delivery_states
from worker.status import FINAL, Status
from worker.validation import field_problems

ApiframeStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"]


class ListQuery(BaseModel):
    """`GET /v2/jobs`'s query, as Apiframe takes it."""

    model_config = ConfigDict(extra="ignore")

    status: ApiframeStatus | None = None
    model: str | None = Field(default=None, max_length=100)
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=512)
    scope: Literal["user", "team"] = "user"
    search: str | None = Field(default=None, max_length=64)
    include_models: Literal["true", "false"] = "false"


async def get_job(request: Request, caller: str) -> Response:
    ref = ref_of(request.path_params["id"])
    if ref is None:
        return refusal(400, "Invalid job id: expected a UUID")
    deps = deps_of(request)
    record = await deps.ledger.get(ref)
    if record is None or record.caller != caller:
        return refusal(404, "Job not found, or owned by a different user")
    [shown] = await shown_jobs(deps, [record])
    return JSONResponse(shown)


async def list_jobs(request: Request, caller: str) -> Response:
    try:
        query = ListQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        return refusal(400, "Invalid query", field_problems(exc, whole="query"))
    if query.scope == "team":
        return refusal(403, "scope=team is for team admins; this key is a caller's own")
    deps = deps_of(request)
    if query.search is not None:
        return await search(deps, caller, query.search)
    statuses = MEANT[query.status] if query.status else ()
    wanted = PageQuery(
        limit=query.limit, statuses=statuses, model=query.model, cursor=query.cursor, caller=caller
    )
    try:  # a place among the lists one receiver serves at once, as `/jobs` takes one
        async with lists_of(request).place():
            page = await deps.ledger.page(wanted)
            jobs = await shown_jobs(deps, page.records)
    except BadCursor as exc:
        return refusal(400, "Invalid query", {"cursor": str(exc)})
    except Busy as exc:
        return refusal(429, f"job lists: {exc}", retry_after=1)
    answer: dict[str, Any] = {
        "jobs": jobs,
        "nextCursor": page.next_cursor,
        "hasMore": page.has_more,
    }
    if query.include_models == "true":
        answer["models"] = sorted({record.model for record in page.records})
    return JSONResponse(answer)


async def search(deps: Deps, caller: str, job_id: str) -> Response:
    """The list holding the one job `search` names, if it is the caller's."""
    ref = ref_of(job_id)
    if ref is None:
        return refusal(400, "Invalid query", {"search": "Invalid uuid"})
    record = await deps.ledger.get(ref)
    found = [record] if record is not None and record.caller == caller else []
    return JSONResponse(
        {"jobs": await shown_jobs(deps, found), "nextCursor": None, "hasMore": False}
    )


async def shown_jobs(deps: Deps, records: list[JobRecord]) -> list[dict[str, Any]]:
    """The records as Apiframe's job objects: the landed files' URLs signed in one call, the
    webhooks' states read in one round trip."""
    keys = [s.key for r in records if r.status == Status.LANDED for s in r.objects]
    urls = await deps.store.presign(keys, deps.settings.presign_ttl) if keys else {}
    owed = {r.ref: owed_webhook(r) for r in records}
    asked = [(event, CALLBACKS) for event in owed.values() if event is not None]
    tries = len(deps.settings.event_retry_schedule)
    states = dict(zip(asked, await delivery_states(deps.redis, asked, tries), strict=True))
    return [job_object(r, urls, webhook_status(r, owed[r.ref], states)) for r in records]


def owed_webhook(record: JobRecord) -> str | None:
    """The event id of the caller's webhook the finished job owes, if it owes one."""
    if record.status not in FINAL:
        return None
    event_type = "job.landed" if record.status == Status.LANDED else "job.failed"
    return event_id(record.job_id or record.ref, event_type) if wants(record, event_type) else None


def webhook_status(
    record: JobRecord, owed: str | None, states: dict[tuple[str, str], str]
) -> str | None:
    """How the caller's own webhook for the job stands, as Apiframe's `webhookStatus` says:
    None without one, `pending` until the job's last event is delivered or given up."""
    if record.callback_url is None or (record.status in FINAL and owed is None):
        return None  # no webhook, or none of the events it asked for
    return states[(owed, CALLBACKS)] if owed is not None else "pending"
