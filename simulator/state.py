"""What the simulator holds: jobs, idempotency keys, and a record of every request and delivery."""

import time
from dataclasses import dataclass, field
from typing import Any

from simulator.images import PaddedImage
from simulator.media import MediaFile
from worker.timestamps import iso_time


def iso(moment: float | None) -> str | None:
    return None if moment is None else iso_time(moment)


@dataclass
class SimJob:
    id: str
    api_key: str
    prompt: str
    model: str
    params: dict[str, Any]
    webhook_url: str | None
    webhook_events: tuple[str, ...]
    credit_cost: int
    cdn_base: str  # where this job's result URLs point
    status: str = "QUEUED"
    progress: int | None = None
    error: str | None = None
    image_urls: list[str] = field(default_factory=list)
    images: dict[str, PaddedImage | MediaFile] = field(default_factory=dict)  # name -> file
    operation: str = "images/generate"
    action: str | None = None
    parent_id: str | None = None
    outputs: dict[str, Any] | None = None  # the result, for a route whose shape is not images
    webhook_status: str | None = None
    created_at: float = field(default_factory=time.time)
    completed_at: float | None = None

    def expired(self, ttl: float) -> bool:
        """Only a COMPLETED job's files expire."""
        done = self.status == "COMPLETED" and self.completed_at is not None
        return done and time.time() > (self.completed_at or 0) + ttl

    def result(self, shape: str) -> Any:
        if self.status != "COMPLETED":
            return None
        if shape == "unknown":  # a shape no document has published
            return {"clips": [{"href": url} for url in self.image_urls]}
        if shape == "string":  # a bare URL: the first file's
            named = [url for url in (self.outputs or {}).values() if isinstance(url, str)]
            return (self.image_urls or named or [""])[0]
        if self.outputs is not None:
            return self.outputs
        if shape == "empty":
            return {"images": []}
        return {"images": list(self.image_urls)}

    def as_json(self, shape: str, ttl: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "progress": self.progress,
            "result": self.result(shape),
            "error": self.error,
            "creditCost": self.credit_cost,
            "webhookStatus": self.webhook_status,
            "createdAt": iso(self.created_at),
            "completedAt": iso(self.completed_at),
            "expired": self.expired(ttl),
        }


@dataclass
class Received:
    """A request to the v2 API; `status` stays None if the client left before the answer."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None


@dataclass(frozen=True)
class Delivery:
    """One webhook POST the simulator made, and how the receiver answered (None: no answer)."""

    job_id: str
    event: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None
    attempt: int
