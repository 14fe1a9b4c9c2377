"""A job as a `/v2/` caller sees it: Apiframe's job object and Apiframe's webhook body, built
from imagedock's record, with one meaning made stronger: `COMPLETED` means landed. Until every
file is in the bucket the job is `PROCESSING` (progress at most 99); then `result` has the
route's own shape, naming the landed objects' URLs.

The job's id is its ref, written as the UUID it is, so the id is known the moment the job is
accepted, before Apiframe has assigned one of its own.
"""

import uuid
from collections.abc import Mapping
from typing import Any

from worker.apiframe.results import Asset, Kind, result_of
from worker.ledger.records import JobRecord
from worker.status import FAILURES, Status
from worker.timestamps import iso_time

SHOWN = {  # imagedock's status -> the one Apiframe's job object says
    Status.SUBMITTING: "QUEUED",
    Status.QUEUED: "QUEUED",
    Status.PROCESSING: "PROCESSING",
    Status.COMPLETED: "PROCESSING",  # at Apiframe, not yet in the bucket
    Status.LANDED: "COMPLETED",
    Status.FAILED: "FAILED",
    Status.TIMED_OUT: "FAILED",
    Status.CANCELLED: "CANCELLED",
}
# Apiframe's job statuses, as `GET /v2/jobs?status=` takes them, and the records each means.
MEANT = {
    shown: tuple(status for status, said in SHOWN.items() if said == shown)
    for shown in dict.fromkeys(SHOWN.values())
}
WEBHOOK_EVENTS = {"job.landed": "completed", "job.failed": "failed"}


def job_id_of(ref: str) -> str:
    return str(uuid.UUID(hex=ref))


def ref_of(job_id: str) -> str | None:
    """The ref a `/v2/` job id names; None for anything but a UUID."""
    try:
        return uuid.UUID(job_id).hex
    except ValueError:
        return None


def progress_of(record: JobRecord) -> int:
    if record.status == Status.LANDED:
        return 100
    if record.status in FAILURES:
        return 0  # as Apiframe shows a failed job: its credits are refunded too
    return min(record.progress or 0, 99)


def landed_result(record: JobRecord, urls: Mapping[str, str]) -> dict[str, Any] | None:
    """The result, naming each landed object by its URL in `urls` (by key)."""
    if record.status != Status.LANDED:
        return None
    # What a track says of itself (title, tags, duration) is the finished job's, not the file's.
    about = {(asset.kind.value, asset.number): asset.about for asset in record.assets}
    assets = []
    for stored in record.objects:
        if stored.key in urls:
            number = stored.number or stored.index
            said = about.get((stored.kind, number))
            assets.append(Asset(Kind(stored.kind), number, urls[stored.key], stored.track_id, said))
    return result_of(assets)


def finished_at(record: JobRecord) -> str | None:
    return iso_time(record.updated_at) if SHOWN[record.status] in ("COMPLETED", "FAILED") else None


def job_object(
    record: JobRecord, urls: Mapping[str, str], webhook_status: str | None
) -> dict[str, Any]:
    """`GET /v2/jobs/{id}`'s answer for the record."""
    failed = record.status in FAILURES
    return {
        "id": job_id_of(record.ref),
        "status": SHOWN[record.status],
        "model": record.model,
        "progress": progress_of(record),
        "result": landed_result(record, urls),
        "error": (record.error or record.status.value) if failed else None,
        "creditCost": 0 if failed else record.credit_cost,
        "webhookStatus": webhook_status,
        "createdAt": iso_time(record.created_at),
        "completedAt": finished_at(record),
        "expired": False,  # the objects are the bucket's, kept as long as the record
    }


def progress_body(record: JobRecord, progress: int) -> dict[str, Any]:
    """The body of a `progress` webhook: Apiframe's progress, capped below landed's 100."""
    return {
        "event": "progress",
        "jobId": job_id_of(record.ref),
        "status": "PROCESSING",
        "progress": min(progress, 99),
        "model": record.model,
    }


def webhook_body(record: JobRecord, event_type: str, urls: Mapping[str, str]) -> dict[str, Any]:
    """The body of the Apiframe webhook imagedock's event `event_type` is for a caller."""
    body: dict[str, Any] = {
        "event": WEBHOOK_EVENTS[event_type],
        "jobId": job_id_of(record.ref),
        "status": SHOWN[record.status],
        "progress": progress_of(record),
    }
    if record.status == Status.LANDED:
        body["result"] = landed_result(record, urls)
    else:
        body["error"] = record.error or record.status.value
    body["model"] = record.model
    if record.status == Status.LANDED and record.credit_cost is not None:
        body["creditCost"] = record.credit_cost
    body["completedAt"] = finished_at(record)
    return body
