"""`POST /webhooks/apiframe`: check each callback against the job imagedock submitted, record it,
and queue the landing. Nothing is downloaded here, so the answer comes in milliseconds."""

import json
import time
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from receiver.responses import error
from receiver.state import deps_of
from worker.apiframe import WebhookEvent
from worker.deps import Deps
from worker.ledger import Ledger
from worker.problems import field_problems
from worker.queue import enqueue_landing
from worker.records import JobRecord
from worker.signatures import verify_signature
from worker.status import Status

MAX_BODY = 1024 * 1024
ACTOR = "receiver"


class TooLarge(Exception):
    pass


async def read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge
    return bytes(body)


def answer(status: int, **content: Any) -> JSONResponse:
    return JSONResponse(content, status_code=status)


async def parse_event(
    request: Request, ledger: Ledger, ref: str | None
) -> tuple[bytes, WebhookEvent] | JSONResponse:
    """The raw body and the event it holds, or the refusal to answer (logged)."""
    try:
        body = await read_capped(request, MAX_BODY)
    except TooLarge:
        status, reason = 413, f"webhook body is over {MAX_BODY} bytes"
    else:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            status, reason = 415, f"webhook body must be application/json, not {media_type!r}"
        else:
            try:
                return body, WebhookEvent.model_validate(json.loads(body))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError too
                status, reason = 400, describe(exc)
    await ledger.log(None, None, ACTOR, "webhook.rejected", reason=reason, ref=ref)
    return error(status, reason)


async def apiframe_webhook(request: Request) -> JSONResponse:
    deps = deps_of(request)
    settings, ledger = deps.settings, deps.ledger
    ref = request.query_params.get("ref") or None
    parsed = await parse_event(request, ledger, ref)
    if isinstance(parsed, JSONResponse):
        return parsed
    body, event = parsed

    signature = request.headers.get("x-webhook-signature")
    variant = verify_signature(body, signature, settings.api_keys) if signature else None
    record = await ledger.get(ref) if ref else await ledger.by_job_id(event.job_id)
    where = (record.ref if record else None, event.job_id)
    if signature is not None and variant is None:
        await ledger.log(*where, ACTOR, "webhook.rejected", reason="signature does not verify")
        return error(401, "webhook signature does not verify")
    if record is None:
        await ledger.log(None, event.job_id, ACTOR, "webhook.rejected", reason="unknown job")
        return error(404, "no submission of imagedock's has this job id or ref")

    trusted = variant is not None
    if record.job_id is None:
        pending = await reconcile_early(ledger, record, event, trusted)
        if pending is not None:
            return pending
        record = await ledger.get(record.ref) or record
    if record.job_id != event.job_id:
        await ledger.log(
            record.ref,
            record.job_id,
            ACTOR,
            "webhook.rejected",
            reason="webhook names another submission's job",
            named=event.job_id,
        )
        return error(409, "this webhook names a job that is not this submission's")

    # A webhook shows this job's webhooks work: the poller waits a full interval again.
    now = time.time()
    await ledger.set_fields(record.ref, last_webhook_at=now, poll_interval=0)
    await ledger.schedule_poll(record.ref, now + settings.poll_after, only_if_tracked=True)
    await ledger.log(
        record.ref,
        event.job_id,
        ACTOR,
        "webhook.accepted",
        status=event.status,
        signed=trusted,
        variant=variant,
    )
    return await apply(deps, record, event, trusted)


async def reconcile_early(
    ledger: Ledger, record: JobRecord, event: WebhookEvent, trusted: bool
) -> JSONResponse | None:
    """A webhook for a submission whose 202 is not recorded yet. A signed one proves the job id
    and attaches it; an unsigned one is kept for the submit to pick up. Either way, never lost."""
    if trusted:
        await ledger.attach(record.ref, event.job_id)
        return None
    if await ledger.stash_early(record.ref, event.model_dump(by_alias=True)):
        return None  # the 202 was recorded in the meantime
    await ledger.log(record.ref, event.job_id, ACTOR, "webhook.early", status=event.status)
    return answer(202, accepted=True, early=True)


async def apply(deps: Deps, record: JobRecord, event: WebhookEvent, trusted: bool) -> JSONResponse:
    """Record what a trusted event says; queue the landing (or, unsigned, its confirmation)."""
    ledger = deps.ledger
    if event.status in ("QUEUED", "PROCESSING"):
        if trusted:
            await ledger.transition(
                record.ref, Status(event.status), ACTOR, progress=event.progress
            )
        return answer(200, accepted=True)
    if trusted and event.status in ("FAILED", "CANCELLED"):
        reason = event.error or f"Apiframe reports the job {event.status}"
        await deps.events.finish(
            record.ref, Status(event.status), ACTOR, error=reason, via="webhook"
        )
        return answer(200, accepted=True)
    if trusted:
        await ledger.transition(
            record.ref,
            Status.COMPLETED,
            ACTOR,
            progress=100,
            result_urls=event.image_urls,
            via="webhook",
        )
    # Unsigned events reach here too: the worker confirms with Apiframe before it downloads.
    queued = await enqueue_landing(deps.redis, event.job_id)
    return answer(200, accepted=True, queued=queued)


def describe(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        found = "; ".join(f"{path}: {msg}" for path, msg in field_problems(exc).items())
        return f"webhook body has the wrong shape: {found}"
    return "webhook body is not valid JSON"
