"""What an event says, built from its job's record.

An event's payload is stored once, in the `imagedock:events` stream its consumers read. The
event's own key keeps only what the record cannot say again (its job's ref, its type and its
timestamp), and a delivery builds the same body from the record: a job's record no longer
changes once it has owed an event, and JSON is written the same way each time, so every sink
and every retry sends the bytes the stream holds.
"""

import hashlib
import json
from typing import Any

from worker.apiframe.catalog import route_named
from worker.ledger.records import JobRecord


def event_id(job_id: str, event_type: str) -> str:
    """Stable for a (job, event type) across retries, replays and crashes."""
    return "evt_" + hashlib.sha256(f"{job_id}:{event_type}".encode()).hexdigest()[:32]


def build_event(record: JobRecord, event_type: str, timestamp: str) -> dict[str, Any]:
    job_id = record.job_id or record.ref
    data: dict[str, Any] = {
        "jobId": job_id,
        "ref": record.ref,
        "status": record.status.value,
        "operation": record.operation,
        **({"action": record.action} if record.action else {}),
        **({"parentJobId": record.parent_job_id} if record.parent_job_id else {}),
        "model": record.model,
        **({"caller": record.caller} if record.caller else {}),
        "prompt": record.prompt,
        "metadata": record.metadata,
        "objects": [stored.public() for stored in record.objects],
    }
    if route_named(record.operation).makes == "image":
        # As image jobs' events have always named them, for the pipelines that read them so.
        data["images"] = data["objects"]
    if event_type == "job.failed":
        data["reason"] = record.error or record.status.value
    return {
        "id": event_id(job_id, event_type),
        "type": event_type,
        "timestamp": timestamp,
        "data": data,
    }


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event)


def stub_of(record: JobRecord, event: dict[str, Any]) -> str:
    """What the event's key keeps: the rest is the record's."""
    return json.dumps({"ref": record.ref, "type": event["type"], "timestamp": event["timestamp"]})
