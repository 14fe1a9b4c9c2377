"""`POST /webhooks/apiframe`: check each callback against the job imagedock submitted, record it,
and queue the landing. Nothing is downloaded here, so the answer comes in milliseconds.

A signed webhook is trusted: it moves the job. An unsigned one is only a hint: it writes
nothing and moves nothing, and queues a confirmation (the landing asks Apiframe first), of which
at most one per job is queued at a time. A refusal costs one counter (see `rejections`).
"""

import json
import re
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from receiver.bodies import BodyRefused, read_capped
from receiver.rejections import Reason, Rejections
from receiver.schemas import WebhookAnswer
from receiver.state import deps_of
from worker.apiframe import WebhookEvent
from worker.deps import Deps
from worker.measures import WEBHOOK_ENQUEUE
from worker.problems import field_problems
from worker.queue import enqueue_landing
from worker.records import JobRecord
from worker.signatures import verify_signature
from worker.status import Status

MAX_BODY = 1024 * 1024
ACTOR = "receiver"
REF = re.compile(r"[0-9a-f]{32}")  # the shape of every ref imagedock mints


class Refused(Exception):
    def __init__(self, status: int, reason: Reason, message: str, **client: object) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.client = status, reason, message, client


Outcome = Literal["accepted", "duplicate", "early", "unsigned"]


@dataclass(frozen=True)
class Taken:
    """A webhook taken: the answer, the outcome it is counted under, and for a completed job
    the seconds from its arrival to its landing being queued."""

    status: int
    outcome: Outcome
    answer: WebhookAnswer
    enqueued_after: float | None = None


async def apiframe_webhook(request: Request) -> JSONResponse:
    deps = deps_of(request)
    arrived = time.perf_counter()
    try:
        taken = await handle(request, deps)
    except Refused as refused:
        rejections: Rejections = request.app.state.rejections
        return await rejections.refuse(
            deps.ledger, refused.status, refused.reason, refused.message, **refused.client
        )
    waited = (
        {} if taken.enqueued_after is None else {WEBHOOK_ENQUEUE: taken.enqueued_after - arrived}
    )
    await deps.ledger.count(f"webhook:{taken.outcome}", observe=waited)
    return JSONResponse(taken.answer.body(), status_code=taken.status)


async def handle(request: Request, deps: Deps) -> Taken:
    ref = request.query_params.get("ref") or None
    if ref is not None and not REF.fullmatch(ref):
        raise Refused(404, "bad_ref", "no submission of imagedock's has this ref", ref=ref)
    body, event = await parse_event(request, deps.settings.body_deadline)
    signature = request.headers.get("x-webhook-signature")
    variant = verify_signature(body, signature, deps.settings.api_keys) if signature else None
    if signature is not None and variant is None:
        raise Refused(
            401, "bad_signature", "webhook signature does not verify", job_id=event.job_id
        )
    trusted = variant is not None
    record = await find_record(deps, ref, event, trusted)
    if record.job_id is None:
        return await keep_early(deps, record, event, trusted)
    if record.job_id != event.job_id:
        raise Refused(
            409,
            "other_job",
            "this webhook names a job that is not this submission's",
            ref=record.ref,
            job_id=event.job_id,
        )
    if not trusted:
        queued = await enqueue_landing(deps.redis, event.job_id)  # the landing confirms first
        return Taken(202, "unsigned", WebhookAnswer(accepted=True, confirming=queued))
    await record_webhook(deps, record, event, variant)
    return await apply(deps, record, event)


async def parse_event(request: Request, deadline: float) -> tuple[bytes, WebhookEvent]:
    try:
        body = await read_capped(request, MAX_BODY, deadline)
    except BodyRefused as exc:
        reasons: dict[int, Reason] = {413: "too_large", 408: "slow_body"}
        reason = reasons.get(exc.status, "disconnected")
        raise Refused(exc.status, reason, f"webhook {exc.message}") from None
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        message = "webhook body must be application/json"
        raise Refused(415, "media_type", message, content_type=media_type)
    try:
        return body, WebhookEvent.model_validate(json.loads(body))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise Refused(400, "bad_body", describe(exc)) from None


async def find_record(deps: Deps, ref: str | None, event: WebhookEvent, trusted: bool) -> JobRecord:
    """The submission the webhook is for. A signed webhook whose ref imagedock minted but no
    longer knows (Redis lost its data) is adopted, so the job still lands."""
    ledger = deps.ledger
    record = await ledger.get(ref) if ref else await ledger.by_job_id(event.job_id)
    if record is not None:
        return record
    if trusted and ref is not None and await ledger.ref_for(event.job_id) is None:
        adopted, _ = await ledger.adopt(ref, event.job_id, model=event.model or "")
        await ledger.schedule_poll(adopted.ref, time.time() + deps.settings.poll_after)
        return adopted
    raise Refused(404, "unknown_job", "no submission of imagedock's has this job id or ref")


async def keep_early(deps: Deps, record: JobRecord, event: WebhookEvent, trusted: bool) -> Taken:
    """A webhook for a submission whose 202 is not recorded yet is kept, signed or not, and
    reconciled when it is: attaching the job id is the submit's alone, so no webhook can lend
    another job's id to this submission."""
    attached = await deps.ledger.stash_early(record.ref, event.job_id, event.status, trusted)
    if attached:  # the 202 was recorded in the meantime: a confirmation will settle it
        await enqueue_landing(deps.redis, attached)
        return Taken(202, "early", WebhookAnswer(accepted=True))
    await deps.ledger.log(record.ref, event.job_id, ACTOR, "webhook.early", status=event.status)
    return Taken(202, "early", WebhookAnswer(accepted=True, early=True))


async def record_webhook(
    deps: Deps, record: JobRecord, event: WebhookEvent, variant: str | None
) -> None:
    """A signed webhook shows this job's webhooks work: the poller waits a full interval again."""
    now = time.time()
    await deps.ledger.set_fields(record.ref, last_webhook_at=now, poll_interval=0)
    poll_at = now + deps.settings.poll_after
    await deps.ledger.schedule_poll(record.ref, poll_at, only_if_tracked=True)
    await deps.ledger.log(
        record.ref, event.job_id, ACTOR, "webhook.accepted", status=event.status, variant=variant
    )


async def apply(deps: Deps, record: JobRecord, event: WebhookEvent) -> Taken:
    """Record what a signed event says, and queue the landing of a finished job. One that
    changes nothing is counted as a duplicate."""
    ledger = deps.ledger
    accepted = WebhookAnswer(accepted=True)
    if event.status in ("QUEUED", "PROCESSING"):
        status = Status(event.status)
        moved = await ledger.transition(record.ref, status, ACTOR, progress=event.progress)
        return Taken(200, "accepted" if moved else "duplicate", accepted)
    if event.status in ("FAILED", "CANCELLED"):
        reason = event.error or f"Apiframe reports the job {event.status}"
        status = Status(event.status)
        moved = await deps.events.finish(record.ref, status, ACTOR, error=reason, via="webhook")
        return Taken(200, "accepted" if moved else "duplicate", accepted)
    moved = await ledger.transition(
        record.ref,
        Status.COMPLETED,
        ACTOR,
        progress=100,
        result_urls=event.image_urls,
        via="webhook",
    )
    queued = await enqueue_landing(deps.redis, event.job_id)  # a lost landing is queued again
    answer = WebhookAnswer(accepted=True, queued=queued)
    if not moved:
        return Taken(200, "duplicate", answer)
    return Taken(200, "accepted", answer, enqueued_after=time.perf_counter())


def describe(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        found = "; ".join(f"{path}: {msg}" for path, msg in field_problems(exc).items())
        return f"webhook body has the wrong shape: {found}"
    return "webhook body is not valid JSON"
