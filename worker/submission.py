"""Submitting a job: accept it (record it and queue it, answered at once), then send it to
Apiframe from the queue at Apiframe's pace (`worker.dispatch`), with a webhook URL naming the
record.

The Apiframe Idempotency-Key derives from the record's ref, so a submit sent again after a lost
answer or a crash, or a caller repeating its own Idempotency-Key, never creates or bills a
second job; and one submit at a time is in flight for a record.
"""

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis

from worker import references
from worker.apiframe import (
    ApiframeClient,
    ApiframeError,
    ApiframeRequest,
    IdempotencyConflict,
    InvalidRequest,
    JobNotFound,
    Submission,
)
from worker.apiframe.catalog import GENERATE, OPERATIONS, action_refused, operation_of
from worker.events import Events
from worker.landing.storage import ObjectStore
from worker.ledger.keys import is_ref
from worker.ledger.ledger import Attached, Conflict, Ledger
from worker.ledger.records import JobRecord
from worker.ledger.waiting import OPERATOR, Priority, SubmitQueue
from worker.runtime.queue import enqueue_landing
from worker.status import FINAL, Status, from_apiframe
from worker.traces import job_span

SUBSCRIBED = ["completed", "failed"]


@dataclass(frozen=True)
class Callback:
    """A `/v2/` caller's own webhook: where, and which of Apiframe's events it wants."""

    url: str
    events: tuple[str, ...]

    def fields(self) -> dict[str, str]:
        return {"callback_url": self.url, "callback_events": json.dumps(list(self.events))}


@dataclass(frozen=True)
class SubmitDeps:
    ledger: Ledger
    redis: ArqRedis
    apiframe: ApiframeClient
    events: Events
    public_url: str
    poll_after: float
    ref_secret: bytes  # keys caller refs (`caller_ref`); derived from imagedock's Apiframe key
    store: ObjectStore  # where inputs named by reference (`references`) are
    reference_seconds: int  # how long their presigned URLs live: past the longest job
    queue: SubmitQueue  # jobs accepted, waiting to be sent

    def webhook_url(self, ref: str, *, progress: bool = False) -> str:
        """Where Apiframe calls back for the record `ref`; `progress` marks a job whose caller
        asked for progress webhooks, so the receiver passes them on without a read."""
        return f"{self.public_url}/webhooks/apiframe?ref={ref}" + (
            "&progress=1" if progress else ""
        )


async def accept_job(
    deps: SubmitDeps,
    request: ApiframeRequest,
    *,
    metadata: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
    actor: str = "receiver",
    caller: str | None = None,
    callback: Callback | None = None,
    priority: Priority = Priority.normal,
    resubmitted_from: str | None = None,
) -> JobRecord:
    """Record `request` and queue it for submission (`submit_waiting` sends it, at Apiframe's
    pace); returns the record, QUEUED with no Apiframe job id yet. An action's parent may be
    named by imagedock's ref or by Apiframe's job id: Apiframe is sent its own (`BadParent` if
    imagedock does not know the parent or it has not finished). A `/v2/` caller's
    Idempotency-Keys are its own, as Apiframe's are per API key; a key sent again names the
    job it named first. A job made again from another names it in `resubmitted_from`."""
    params = request.params or {}
    block = request.catalogued.params_key if request.catalogued else ""
    await references.check(deps.store, params, block)
    model, lineage = request.model or "", lineage_of(request)
    if resubmitted_from is not None:
        lineage["resubmitted_from"] = resubmitted_from
    if request.route.acts_on_parent:
        parent = await parent_of(deps.ledger, request)
        assert parent.job_id is not None
        model, lineage["parent_job_id"] = parent.model, parent.job_id
    claim = None
    if idempotency_key is not None:  # a caller's keys never meet the operator's or another's
        claim = f"v2:{caller}:{idempotency_key}" if caller else f"submit:{idempotency_key}"
    record, created = await deps.ledger.create(
        prompt=request.prompt or "",
        model=model,
        params=params,
        metadata=metadata,
        idempotency_key=claim,
        ref=caller_ref(claim, deps.ref_secret) if claim else None,
        lineage=lineage,
        caller=caller,
        callback=callback.fields() if callback else None,
        status=Status.QUEUED,
        admission=deps.queue.admission(caller or OPERATOR, model),  # QueueFull, OverBudget
    )
    if not created and (record.job_id or record.status in FINAL):
        return record  # the caller repeated its Idempotency-Key: same job, nothing new
    # Watched by the poller from the start: the submit deadline ends a job never submitted.
    # Queued again after a crash between the record and its place: a place is kept once.
    await deps.queue.add(record, priority, poll_at=time.time() + deps.poll_after, actor=actor)
    return record


async def submit_waiting(deps: SubmitDeps, ref: str, actor: str = "worker") -> JobRecord | None:
    """Send a queued job to Apiframe and attach the job id it answers with; None if the record
    is gone. Apiframe's refusal of the request itself fails the job; any other error is
    raised for the taker to give the job back (`worker.dispatch`)."""
    # One taker at a time holds the job's lease (`worker.ledger.waiting`); should a second
    # ever send it too, the Idempotency-Key makes it one job at Apiframe all the same.
    record = await deps.ledger.get(ref)
    if record is None or record.job_id or record.status in FINAL:
        return record
    request = request_of(record)
    wire = await sent_params(deps, record, record.params)
    request = request.model_copy(update={"params": wire or request.params})
    with job_span("apiframe.submit", record.trace, **{"imagedock.ref": record.ref}) as span:
        submission, attached = await send(deps, record, request, actor)
        span.set_attribute("imagedock.job_id", submission.job_id)
    if wire is not None:  # Apiframe has the job: its presigned URLs need keeping no longer
        await deps.ledger.clear_fields(record.ref, "sent_params")
    job_id = submission.job_id
    early = attached.early
    await deps.ledger.transition(record.ref, from_apiframe(submission.status), actor, error="")
    await deps.ledger.schedule_poll(record.ref, time.time() + deps.poll_after)
    await deps.ledger.log(record.ref, job_id, actor, "job.submitted", status=submission.status)
    if early is not None and early.get("jobId") != job_id:
        await deps.ledger.log(record.ref, job_id, actor, "webhook.early_ignored", webhook=early)
        early = None
    if early is not None:
        await deps.ledger.log(record.ref, job_id, actor, "webhook.reconciled", webhook=early)
    finished = {"COMPLETED", "FAILED", "CANCELLED"}
    if submission.status in finished or (early or {}).get("status") in finished:
        # A webhook beat the 202, or a replayed key already finished: no webhook may follow.
        await enqueue_landing(deps.redis, job_id)
    return await deps.ledger.get(record.ref)


async def cancel_waiting(deps: SubmitDeps, record: JobRecord, actor: str) -> JobRecord:
    """End a job still waiting in imagedock's queue as CANCELLED, with the `job.failed` event
    that says so; `NotWaiting` if Apiframe has it, or is being sent it right now (Apiframe has
    no cancel), or it has ended."""
    if record.status in FINAL:
        raise NotWaiting(f"the job has ended: {record.status.value}")
    withdrawn = await deps.queue.withdraw(record.ref)
    if withdrawn is None:
        raise NotWaiting("the job is being submitted to Apiframe right now, which has no cancel")
    if not withdrawn:
        raise NotWaiting(f"Apiframe has the job ({record.job_id}), and has no cancel")
    reason = "cancelled before it was submitted to Apiframe"
    await deps.events.finish(record.ref, Status.CANCELLED, actor, error=reason)
    return await deps.ledger.get(record.ref) or record


class NotWaiting(Exception):
    """A cancel of a job that is no longer waiting to be submitted."""


def request_of(record: JobRecord) -> ApiframeRequest:
    """The request a queued record was accepted with, checked then: built, not checked again.
    An action names its parent's Apiframe job id and no model of its own; an empty params
    block, which says nothing, is not sent."""
    action = OPERATIONS[record.operation].acts_on_parent
    return ApiframeRequest.model_construct(
        operation=record.operation,
        prompt=record.prompt or None,
        model=None if action else record.model,
        params=record.params or None,
        action=record.action,
        parent_job_id=record.parent_job_id,
        webhook_url=None,
        webhook_events=None,
    )


async def sent_params(
    deps: SubmitDeps, record: JobRecord, params: dict[str, Any]
) -> dict[str, Any] | None:
    """The params Apiframe is sent, references made URLs: made once, then kept with the
    record until Apiframe has the job, so that every retry sends the same body. None if
    nothing needs resolving."""
    if record.sent_params is not None:
        return record.sent_params
    if next(references.references(params), None) is None:
        return None
    wire = await references.resolve(deps.store, params, deps.reference_seconds)
    await deps.ledger.set_fields(record.ref, sent_params=json.dumps(wire))
    return wire


class BadParent(ValueError):
    """An action's parent imagedock cannot act on: unknown, or not finished."""


class ActionUnavailable(BadParent):
    """The action is not one its parent can take (Apiframe answers 409)."""


LANDABLE = frozenset({Status.COMPLETED, Status.LANDED})


async def parent_of(ledger: Ledger, request: ApiframeRequest) -> JobRecord:
    """The record of the job an action names, by imagedock's ref or by Apiframe's job id: one
    imagedock knows, that finished, and that the action is available for."""
    named = request.parent_job_id or ""
    parent = await ledger.by_job_id(named) or (await ledger.get(named) if is_ref(named) else None)
    if parent is None or parent.job_id is None:
        raise BadParent(f"imagedock knows no job {named[:64]!r}: name one it submitted or tracks")
    if parent.status not in LANDABLE:
        raise BadParent(f"job {named[:64]} is {parent.status.value}; an action needs it finished")
    refused = action_refused(request.operation, request.action or "", parent.model, parent.action)
    if refused is not None:
        raise ActionUnavailable(refused)
    return parent


def lineage_of(request: ApiframeRequest) -> dict[str, str]:
    """What the record keeps of how the job was made, past the default route."""
    lineage = {"operation": request.operation} if request.operation != GENERATE else {}
    return lineage | ({"action": request.action} if request.action else {})


async def send(
    deps: SubmitDeps, record: JobRecord, request: ApiframeRequest, actor: str
) -> tuple[Submission, Attached]:
    """Submit the record to Apiframe and attach the job id it answers with."""
    # A `/v2/` job follows its progress, as Apiframe's job object does for a caller that
    # polls; the webhook URL says whether the caller asked to be sent it too.
    progress = "progress" in record.callback_events
    wire = request.model_copy(
        update={
            "webhook_url": deps.webhook_url(record.ref, progress=progress),
            "webhook_events": [*SUBSCRIBED, "progress"] if record.caller else SUBSCRIBED,
        }
    )
    try:
        submission = await deps.apiframe.submit(wire, idempotency_key=apiframe_key(record))
    except ApiframeError as exc:
        await deps.ledger.log(record.ref, None, actor, "submit.error", error=str(exc))
        if refuses_the_request(exc):
            await deps.events.finish(record.ref, Status.FAILED, actor, error=str(exc))
            await deps.ledger.clear_fields(record.ref, "sent_params")  # never to be sent again
        else:  # it waits again; the record says why it has not gone yet
            await deps.ledger.set_fields(record.ref, error=str(exc))
        raise
    attached = await deps.ledger.attach(record.ref, submission.job_id)
    if attached.job_id != submission.job_id:
        await deps.ledger.log(
            record.ref,
            submission.job_id,
            actor,
            "submit.conflict",
            attached=attached.job_id,
            owner=attached.owner,
        )
        raise Conflict(
            f"Apiframe answered with job {submission.job_id}, which another submission holds"
        )
    return submission, attached


def refuses_the_request(exc: ApiframeError) -> bool:
    """Whether Apiframe's answer refuses the request itself, so that sending it again could
    never pass: a 400, a parent it does not know (404) or cannot act on (409 without a key
    conflict). Throttling, an empty balance, a refused key and outages pass with time."""
    if isinstance(exc, IdempotencyConflict):  # or the same key still in flight on its side
        return "not available" in exc.message
    return isinstance(exc, InvalidRequest | JobNotFound)


def apiframe_key(record: JobRecord) -> str:
    """The Idempotency-Key Apiframe is sent for the record: its ref's, so every retry is one
    job. A `/v2/` caller's also names the request's fingerprint: a key whose request Apiframe
    refused is free again (`Ledger.discard`), and its fixed request must not meet the refused
    one at Apiframe."""
    if record.caller:
        return f"imagedock-{record.ref}-{record.fingerprint[:16]}"
    return f"imagedock-{record.ref}"


def caller_ref(claim: str, secret: bytes) -> str:
    """The ref for a caller's Idempotency-Key, as its claim (`submit:KEY`, or for a `/v2/`
    caller `v2:CALLER:KEY`) names it. It is the same after Redis loses its data, and so
    are the Apiframe Idempotency-Key and webhook URL derived from it: Apiframe then answers with
    the job it already has instead of billing a second one. It is keyed with `secret`, so that
    nobody who knows an Idempotency-Key can compute the ref and aim webhooks at it. Like every
    ref it is a version-4 UUID's hex, as `/v2/` shows it."""
    digest = hmac.new(secret, claim.encode(), hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4).hex


async def track_job(
    deps: SubmitDeps, job_id: str, actor: str = "receiver"
) -> tuple[JobRecord, bool]:
    """Adopt a job submitted elsewhere so the poller lands it; False if it was already known.
    Apiframe is asked first: a job it does not know (`JobNotFound`) is never recorded, so no
    made-up id ends in a `job.failed` sent downstream."""
    known = await deps.ledger.by_job_id(job_id)
    if known is not None:
        return known, False
    job = await deps.apiframe.get_job(job_id)
    operation = operation_of(job.model or "") or GENERATE  # its route, as its model tells
    record, created = await deps.ledger.create(
        prompt="",
        model=job.model or "",
        source="track",
        job_id=job_id,
        status=Status.QUEUED,
        idempotency_key=f"track:{job_id}",
        lineage={"operation": operation} if operation != GENERATE else None,
    )
    if not created:
        return record, False
    await deps.ledger.schedule_poll(record.ref, time.time())
    await deps.ledger.log(record.ref, job_id, actor, "job.tracked")
    return record, True
