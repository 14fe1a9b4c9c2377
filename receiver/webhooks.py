"""`POST /webhooks/apiframe`: check each callback against the job imagedock submitted, record it,
and queue the landing. Nothing is downloaded here, so the answer comes in milliseconds.

A signed webhook is trusted: it moves the job, in one Redis call (`worker.intake`). An unsigned
one is only a hint: it writes nothing and moves nothing, and queues a confirmation (the landing
asks Apiframe first), at most one per job each `CONFIRM_INTERVAL`. A signed duplicate is counted,
not logged. A refusal costs one counter (see `rejections`).
"""

import functools
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.bodies import BodyRefused, read_capped
from receiver.rejections import Reason, Rejections
from receiver.schemas import WebhookAnswer
from receiver.state import deps_of
from worker import metrics
from worker.apiframe import WebhookEvent
from worker.apiframe.signatures import verify_signature
from worker.deps import Deps
from worker.intake import Taken
from worker.ledger import keys
from worker.ledger.keys import is_ref
from worker.ledger.records import JobRecord
from worker.runtime.queue import enqueue_landing, enqueue_progress
from worker.status import Status
from worker.traces import context_of, links_to_current, tracer
from worker.validation import field_problems

MAX_BODY = 1024 * 1024
ACTOR = "receiver"
JSON = "application/json"
CONFIRM_INTERVAL = 10.0  # seconds between confirmations that unsigned webhooks may cause


class Refused(Exception):
    def __init__(
        self, status: int, reason: Reason, message: str, *, counted: bool = False, **client: object
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.client = status, reason, message, client
        self.counted = counted  # the intake script counted it already


Outcome = Literal["accepted", "duplicate", "early", "unsigned"]


@dataclass(frozen=True)
class Answered:
    """A webhook taken: the answer, and the outcome it is counted under (unless the intake
    script counted it already)."""

    status: int
    outcome: Outcome
    answer: WebhookAnswer
    counted: bool = False


async def apiframe_webhook(request: Request) -> Response:
    deps = deps_of(request)
    arrived = time.perf_counter()
    try:
        answered = await handle(request, deps, arrived)
    except Refused as refused:
        rejections: Rejections = request.app.state.rejections
        return await rejections.refuse(
            deps.ledger,
            refused.status,
            refused.reason,
            refused.message,
            counted=refused.counted,
            **refused.client,
        )
    if not answered.counted:
        await deps.ledger.count(metrics.WEBHOOKS_RECEIVED(answered.outcome))
    return Response(rendered(answered.answer), answered.status, media_type=JSON)


@functools.lru_cache(maxsize=16)
def rendered(answer: WebhookAnswer) -> bytes:
    """The answer's body as `JSONResponse` writes it, made once: there are a handful."""
    return bytes(JSONResponse(answer.body()).body)


async def handle(request: Request, deps: Deps, arrived: float) -> Answered:
    ref = request.query_params.get("ref") or None
    if ref is not None and not is_ref(ref):
        raise Refused(404, "bad_ref", "no submission of imagedock's has this ref", ref=ref)
    body, event = await parse_event(request, deps.settings.body_deadline)
    signature = request.headers.get("x-webhook-signature")
    variant = verify_signature(body, signature, deps.settings.api_keys) if signature else None
    if signature is not None and variant is None:
        raise Refused(
            401, "bad_signature", "webhook signature does not verify", job_id=event.job_id
        )
    if variant is None:
        return await hint(deps, ref, event)
    taken = await deps.intake.take(ref, event, variant, waited=time.perf_counter() - arrived)
    if taken.outcome == "unknown":  # perhaps a ref Redis lost: adopted, then taken again
        await find_record(deps, ref, event, trusted=True)
        taken = await deps.intake.take(ref, event, variant, waited=time.perf_counter() - arrived)
    trace_intake(taken, event, time.perf_counter() - arrived)
    if taken.outcome == "early":
        return await keep_early(deps, taken.ref, event, trusted=True)
    if taken.outcome == "other_job":
        raise other_job(taken.ref, event, counted=True)
    if taken.outcome == "finish":
        reason = event.error or f"Apiframe reports the job {event.status}"
        status = Status(event.status)
        moved = await deps.events.finish(taken.ref, status, ACTOR, error=reason, via="webhook")
        return Answered(200, "accepted" if moved else "duplicate", WebhookAnswer(accepted=True))
    if taken.outcome == "accepted" and wants_progress(request, event):
        await enqueue_progress(deps.redis, taken.ref, event.progress or 0)
    queued = taken.queued if event.status == "COMPLETED" else None
    answer = WebhookAnswer(accepted=True, queued=queued)
    return Answered(200, "duplicate" if taken.outcome == "duplicate" else "accepted", answer, True)


def trace_intake(taken: Taken, event: WebhookEvent, took: float) -> None:
    """The webhook's place in its job's trace (`worker.traces`): a span from its arrival to
    now, a child of the job's context, linked to the request's own span (Apiframe's call is a
    trace of its own)."""
    if not taken.trace:
        return
    now = time.time_ns()
    span = tracer.start_span(
        "webhook.intake",
        context=context_of(taken.trace),
        links=links_to_current(),
        start_time=now - int(took * 1e9),
        attributes={
            "imagedock.job_id": event.job_id,
            "imagedock.status": event.status,
            "imagedock.outcome": taken.outcome,
        },
    )
    span.end(end_time=now)


def wants_progress(request: Request, event: WebhookEvent) -> bool:
    """A signed progress webhook for a job whose `/v2/` caller asked to be told (its webhook
    URL says so: see `SubmitDeps.webhook_url`)."""
    running = event.status in ("QUEUED", "PROCESSING") and event.progress is not None
    return running and request.query_params.get("progress") == "1"


async def hint(deps: Deps, ref: str | None, event: WebhookEvent) -> Answered:
    """An unsigned webhook moves nothing: it queues a landing that asks Apiframe first."""
    record = await find_record(deps, ref, event, trusted=False)
    if record.job_id is None:
        return await keep_early(deps, record.ref, event, trusted=False)
    if record.job_id != event.job_id:
        raise other_job(record.ref, event)
    # Anyone who saw a job id can send these: at most one an interval costs a call to Apiframe.
    queued = False
    if not await deps.ledger.marks.once_within(keys.confirming(event.job_id), CONFIRM_INTERVAL):
        queued = await enqueue_landing(deps.redis, event.job_id)  # the landing confirms first
    return Answered(202, "unsigned", WebhookAnswer(accepted=True, confirming=queued))


def other_job(ref: str, event: WebhookEvent, *, counted: bool = False) -> Refused:
    message = "this webhook names a job that is not this submission's"
    return Refused(409, "other_job", message, counted=counted, ref=ref, job_id=event.job_id)


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
    try:  # parsed and checked in one pass
        return body, WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        raise Refused(400, "bad_body", describe(exc)) from None


async def find_record(deps: Deps, ref: str | None, event: WebhookEvent, trusted: bool) -> JobRecord:
    """The submission the webhook is for. A signed webhook whose ref imagedock minted but no
    longer knows (Redis lost its data) is adopted, so the job still lands."""
    ledger = deps.ledger
    # Its summary does for a hint, which needs the job id only: no S3 read for anyone's asking.
    found = ledger.get(ref, whole=trusted) if ref else ledger.by_job_id(event.job_id, whole=trusted)
    record = await found
    if record is not None:
        return record
    if trusted and ref is not None and await ledger.ref_for(event.job_id) is None:
        adopted, _ = await ledger.adopt(ref, event.job_id, model=event.model or "")
        await ledger.schedule_poll(adopted.ref, time.time() + deps.settings.poll_after)
        return adopted
    raise Refused(404, "unknown_job", "no submission of imagedock's has this job id or ref")


async def keep_early(deps: Deps, ref: str, event: WebhookEvent, trusted: bool) -> Answered:
    """A webhook for a submission whose 202 is not recorded yet is kept, signed or not, and
    reconciled when it is: attaching the job id is the submit's alone, so no webhook can lend
    another job's id to this submission."""
    attached, news = await deps.ledger.stash_early(ref, event.job_id, event.status, trusted)
    if attached:  # the 202 was recorded in the meantime: a confirmation will settle it
        await enqueue_landing(deps.redis, attached)
        return Answered(202, "early", WebhookAnswer(accepted=True))
    if trusted and news:  # a copy, or an unsigned one, is counted: anyone may send thousands
        await deps.ledger.log(ref, event.job_id, ACTOR, "webhook.early", status=event.status)
    return Answered(202, "early", WebhookAnswer(accepted=True, early=True))


def describe(exc: ValidationError) -> str:
    if any(error["type"] == "json_invalid" for error in exc.errors()):
        return "webhook body is not valid JSON"
    found = "; ".join(f"{path}: {msg}" for path, msg in field_problems(exc).items())
    return f"webhook body has the wrong shape: {found}"
