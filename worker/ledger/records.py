"""What the ledger stores, as typed records, and the one decoder of what Redis answers."""

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from worker.apiframe.catalog import GENERATE
from worker.apiframe.results import Asset, Kind, loads, numbered
from worker.status import Status


def assets_in(raw: dict[str, str]) -> list[Asset]:
    """The record's assets; a record written before assets had kinds lists image URLs."""
    if raw.get("assets"):
        return loads(raw["assets"])
    return numbered(Kind.IMAGE, json.loads(raw.get("result_urls") or "[]"))


def costed(credit_cost: int | None) -> dict[str, int]:
    """The record's `credit_cost` field, where Apiframe said what the job cost."""
    return {"credit_cost": credit_cost} if credit_cost is not None else {}


def text(value: bytes | str | None) -> str | None:
    """A value as Redis answered it (bytes), as text."""
    return value.decode() if isinstance(value, bytes) else value


def pairs(flat: list[Any]) -> dict[Any, Any]:
    """A hash as a script answers it, a flat list of names and values, as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def decoded(raw: dict[Any, Any]) -> dict[str, str]:
    """A hash as Redis answered it, as text."""
    return {text(k) or "": text(v) or "" for k, v in raw.items()}


@dataclass(frozen=True)
class StoredObject:
    """One file landed in S3."""

    index: int  # its place among the job's files, from 1
    bucket: str
    key: str
    bytes: int
    sha256: str
    content_type: str
    source_url: str
    kind: str = Kind.IMAGE.value
    number: int | None = None  # within its kind (see `Asset`); the index where it is None
    track_id: str | None = None

    @classmethod
    def from_json(cls, raw: str) -> "StoredObject":
        return cls(**json.loads(raw))

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    def public(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            **({"trackId": self.track_id} if self.track_id else {}),
            "bucket": self.bucket,
            "key": self.key,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "contentType": self.content_type,
            "sourceUrl": self.source_url,
        }


@dataclass(frozen=True)
class JobRecord:
    ref: str
    status: Status
    model: str
    prompt: str
    params: dict[str, Any]
    metadata: dict[str, str]
    source: str
    created_at: float
    updated_at: float
    fingerprint: str = ""
    job_id: str | None = None
    submitted_at: float | None = None
    progress: int | None = None
    assets: list[Asset] = field(default_factory=list)  # the files the finished job names
    error: str | None = None
    objects: list[StoredObject] = field(default_factory=list)
    pending_event: str | None = None
    last_webhook_at: float | None = None
    poll_interval: float | None = None
    via: str | None = None  # how imagedock learned the job finished: "webhook" or "poll"
    completed_at: float | None = None
    landing_failures: int = 0  # failed landing attempts, whoever queued them
    operation: str = GENERATE  # the Apiframe route that made the job
    action: str | None = None  # an action route's action
    parent_job_id: str | None = None  # the Apiframe job an action acted on
    sent_params: dict[str, Any] | None = None  # as Apiframe was sent them: references resolved
    caller: str | None = None  # the `/v2/` caller that submitted it (see `worker.callers`)
    callback_url: str | None = None  # the caller's own webhook, and the events it wants there
    callback_events: tuple[str, ...] = ()
    credit_cost: int | None = None  # as Apiframe reported it when the job finished
    claim: str | None = None  # the Idempotency-Key claim that names this record, if any
    resubmitted_from: str | None = None  # the ref of the job this one was made again from
    trace: str | None = None  # the job's trace context, a W3C traceparent (`worker.traces`)

    @classmethod
    def from_redis(cls, raw: dict[str, str], objects: list[StoredObject]) -> "JobRecord":
        def number(name: str) -> float | None:
            return float(raw[name]) if raw.get(name) else None

        return cls(
            ref=raw["ref"],
            status=Status(raw["status"]),
            model=raw.get("model", ""),
            prompt=raw.get("prompt", ""),
            params=json.loads(raw.get("params") or "{}"),
            metadata=json.loads(raw.get("metadata") or "{}"),
            source=raw.get("source", "submit"),
            created_at=number("created_at") or 0.0,
            updated_at=number("updated_at") or 0.0,
            fingerprint=raw.get("fingerprint", ""),
            job_id=raw.get("job_id") or None,
            submitted_at=number("submitted_at"),
            progress=int(raw["progress"]) if raw.get("progress") else None,
            assets=assets_in(raw),
            error=raw.get("error") or None,
            objects=sorted(objects, key=lambda stored: stored.index),
            pending_event=raw.get("pending_event") or None,
            last_webhook_at=number("last_webhook_at"),
            poll_interval=number("poll_interval"),
            via=raw.get("via") or None,
            completed_at=number("completed_at"),
            landing_failures=int(raw.get("landing_failures") or 0),
            operation=raw.get("operation") or GENERATE,
            action=raw.get("action") or None,
            parent_job_id=raw.get("parent_job_id") or None,
            sent_params=json.loads(raw["sent_params"]) if raw.get("sent_params") else None,
            caller=raw.get("caller") or None,
            callback_url=raw.get("callback_url") or None,
            callback_events=tuple(json.loads(raw.get("callback_events") or "[]")),
            credit_cost=int(raw["credit_cost"]) if raw.get("credit_cost") else None,
            claim=raw.get("claim") or None,
            resubmitted_from=raw.get("resubmitted_from") or None,
            trace=raw.get("trace") or None,
        )

    def outcome(self, now: float) -> dict[str, Any]:
        """What the one canonical `job.landed` or `job.failed` line says of the job."""
        return {
            "duration_ms": round((now - self.created_at) * 1000),
            "files": len(self.objects),
            "bytes": sum(stored.bytes for stored in self.objects),
            "keys": [stored.key for stored in self.objects],
            "via": self.via or "webhook",
        }
