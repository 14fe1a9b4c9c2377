"""`POST /jobs/batch`: up to 1,000 jobs in one request, each accepted or refused on its own.

The batch as a whole is refused (400, naming the field) only when it is not a batch: not a list,
over `BATCH_MOST` jobs, or two of them under one Idempotency-Key. Otherwise every job is checked
and queued as `POST /jobs` would, and the answer lists each one's outcome in order: a job
refused does not refuse the others, and a batch sent again with its keys accepts nothing twice.
"""

import asyncio
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.bodies import BodyRefused, read_capped
from receiver.jobs import JobRequest
from receiver.responses import error
from receiver.schemas import BatchAccepted, BatchOutcome
from receiver.state import deps_of
from worker.ledger.admission import OverBudget, QueueFull
from worker.ledger.ledger import Conflict
from worker.ledger.waiting import Priority
from worker.references import BadReference
from worker.submission import BadParent, SubmitDeps, accept_job
from worker.validation import field_problems

BATCH_MOST = 1000
BATCH_BODY = 8 * 1024 * 1024  # a thousand jobs of a few KiB each
AT_ONCE = 8  # jobs of one batch recorded at once: its share of the process's Redis pool


class BatchJob(JobRequest):
    """One job of a batch: a `POST /jobs` body, and the Idempotency-Key that header would carry."""

    idempotency_key: str | None = Field(
        default=None, alias="idempotencyKey", min_length=1, max_length=255
    )


class BatchRequest(BaseModel):
    """What the document says a batch is; `items_of` and `BatchJob` read it. Its jobs are
    objects, each checked as `POST /jobs` checks its body, and refused on its own."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=BATCH_MOST,
        description="each a POST /jobs body, with an optional idempotencyKey",
    )


class NotABatch(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field


async def create_batch(request: Request) -> Response:
    deps = deps_of(request)
    try:
        raw = await read_capped(request, BATCH_BODY, deps.settings.body_deadline)
        items = items_of(raw)
    except BodyRefused as exc:
        return error(exc.status, exc.message)
    except NotABatch as exc:
        return error(400, "invalid batch", details={exc.field: str(exc)})
    places = asyncio.Semaphore(AT_ONCE)

    async def one(item: Any) -> BatchOutcome:
        async with places:
            return await accept_item(deps.submitting, item)

    outcomes = await asyncio.gather(*(one(item) for item in items))
    accepted = sum(outcome.ref is not None for outcome in outcomes)
    answer = BatchAccepted(jobs=outcomes, accepted=accepted, refused=len(outcomes) - accepted)
    return JSONResponse(answer.body(), 202)


def items_of(raw: bytes) -> list[Any]:
    """The batch's jobs, unchecked; NotABatch if it is not one."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise NotABatch("body", "not JSON") from None
    if not isinstance(body, dict) or set(body) != {"jobs"} or not isinstance(body["jobs"], list):
        raise NotABatch("jobs", 'send {"jobs": [job, ...]}')
    items: list[Any] = body["jobs"]
    if not 1 <= len(items) <= BATCH_MOST:
        raise NotABatch("jobs", f"1 to {BATCH_MOST} jobs, not {len(items)}")
    first: dict[str, int] = {}
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise NotABatch(f"jobs.{n}", "each job is an object: a POST /jobs body")
        key = item.get("idempotencyKey")
        if isinstance(key, str) and key in first:
            raise NotABatch(f"jobs.{n}.idempotencyKey", f"repeats jobs.{first[key]}'s")
        if isinstance(key, str):
            first[key] = n
    return items


async def accept_item(deps: SubmitDeps, item: Any, actor: str = "receiver") -> BatchOutcome:
    """One job of a batch (or of `imagedock submit --from`), accepted or refused on its own."""
    try:
        job = BatchJob.model_validate(item)
    except ValidationError as exc:
        return BatchOutcome(code=400, error="invalid job request", details=field_problems(exc))
    if job.webhook_url is not None or job.webhook_events is not None:
        return BatchOutcome(code=400, error="webhooks are imagedock's to set; leave them out")
    try:
        record = await accept_job(
            deps,
            job,
            metadata=job.metadata,
            idempotency_key=job.idempotency_key,
            actor=actor,
            priority=Priority[job.priority],
        )
    except BadParent as exc:
        return BatchOutcome(
            code=400, error="invalid job request", details={"parentJobId": str(exc)}
        )
    except BadReference as exc:
        return BatchOutcome(code=400, error="invalid job request", details={exc.field: str(exc)})
    except Conflict as exc:
        return BatchOutcome(error=str(exc), code=409)
    except OverBudget as exc:
        credits = {"creditsRequired": exc.needed, "creditsAvailable": exc.left}
        return BatchOutcome(error=str(exc), code=402, details=credits)
    except QueueFull as exc:
        return BatchOutcome(error=str(exc), code=429)
    return BatchOutcome(ref=record.ref, job_id=record.job_id, status=record.status)
