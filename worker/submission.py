"""Submitting a job: record it first, then call Apiframe with a webhook URL naming the record.

The Apiframe Idempotency-Key derives from the record's ref, so a submit retried after a lost answer,
or by a caller repeating its own Idempotency-Key, never creates or bills a second job; and one
submit at a time is in flight for a record, however many copies of a request arrive at once.
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
    Submission,
)
from worker.apiframe.catalog import GENERATE, action_refused, operation_of
from worker.events import Events
from worker.landing.storage import ObjectStore
from worker.ledger import keys
from worker.ledger.keys import is_ref
from worker.ledger.ledger import Attached, Conflict, Ledger
from worker.ledger.records import JobRecord
from worker.runtime.queue import enqueue_landing
from worker.status import FINAL, Status, from_apiframe

SUBSCRIBED = ["completed", "failed"]
SUBMIT_LEASE = 90.0  # seconds: longer than a submit can take, its in-call retries included


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

    def webhook_url(self, ref: str, *, progress: bool = False) -> str:
        """Where Apiframe calls back for the record `ref`; `progress` marks a job whose caller
        asked for progress webhooks, so the receiver passes them on without a read."""
        return f"{self.public_url}/webhooks/apiframe?ref={ref}" + (
            "&progress=1" if progress else ""
        )


async def submit_job(
    deps: SubmitDeps,
    request: ApiframeRequest,
    *,
    metadata: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
    actor: str = "receiver",
    caller: str | None = None,
    callback: Callback | None = None,
) -> JobRecord:
    """Record and submit `request`; returns the record with Apiframe's job id attached. An
    action's parent may be named by imagedock's ref or by Apiframe's job id: Apiframe is sent
    its own (`BadParent` if imagedock does not know the parent or it has not finished). A
    `/v2/` caller's Idempotency-Keys are its own, as Apiframe's are per API key."""
    params = request.params or {}
    block = request.catalogued.params_key if request.catalogued else ""
    await references.check(deps.store, params, block)
    model, lineage = request.model or "", lineage_of(request)
    if request.route.acts_on_parent:
        parent = await parent_of(deps.ledger, request)
        assert parent.job_id is not None
        request = request.model_copy(update={"parent_job_id": parent.job_id})
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
    )
    if not created and (record.job_id or record.status in FINAL):
        return record  # the caller repeated its Idempotency-Key: same job, nothing new
    if created:  # watched from the start, so an outage cannot leave it SUBMITTING for ever
        await deps.ledger.schedule_poll(record.ref, time.time() + deps.poll_after)
    # One submit in flight per record: a caller's key sent again at once waits its turn.
    async with deps.ledger.marks.leased(keys.submitting(record.ref), SUBMIT_LEASE) as held:
        if not held:
            raise InFlight(record.ref)
        if not created:  # the lease's last holder may have submitted it since it was read
            record = await deps.ledger.get(record.ref) or record
            if record.job_id or record.status in FINAL:
                return record
        wire = await sent_params(deps, record, params)
        request = request.model_copy(update={"params": wire or request.params})
        submission, attached = await send(deps, record, request, actor)
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
    final = await deps.ledger.get(record.ref)
    assert final is not None
    return final


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


class InFlight(Conflict):
    """The same Idempotency-Key's submit is in flight right now: its job is `ref`."""

    def __init__(self, ref: str) -> None:
        super().__init__("that Idempotency-Key is being submitted right now; retry shortly")
        self.ref = ref


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
        # Kept SUBMITTING, for the caller to retry with its Idempotency-Key: what may pass, and
        # a 409, which Apiframe answers while the same key is still in flight on its side.
        if exc.transient or isinstance(exc, IdempotencyConflict):
            await deps.ledger.set_fields(record.ref, error=str(exc))
        elif record.caller:  # as Apiframe would have: no job, and the key free again
            await deps.ledger.discard(record, actor, str(exc))
        else:
            await deps.events.finish(record.ref, Status.FAILED, actor, error=str(exc))
            await deps.ledger.clear_fields(record.ref, "sent_params")  # never to be sent again
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
