"""The job status vocabulary and the rule that states only move forward."""

from enum import StrEnum

import structlog


class Status(StrEnum):
    SUBMITTING = "SUBMITTING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    LANDED = "LANDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


# A status may only be replaced by one of a higher rank; final ones are never replaced.
RANK = {
    Status.SUBMITTING: 0,
    Status.QUEUED: 1,
    Status.PROCESSING: 2,
    Status.COMPLETED: 3,
    Status.LANDED: 4,
    Status.FAILED: 4,
    Status.CANCELLED: 4,
    Status.TIMED_OUT: 4,
}
# Final: imagedock is done with the job (LANDED included; Apiframe's own finished states are
# `worker.apiframe.models.FINISHED`).
FINAL = frozenset({Status.LANDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})
UNFINISHED = frozenset(set(Status) - FINAL)
FAILURES = frozenset({Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})


APIFRAME = frozenset({"QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"})
log = structlog.get_logger("apiframe")


def from_apiframe(status: str) -> Status:
    """The status Apiframe reports, as imagedock's. One it has not published yet is taken as
    still running at the lowest rank, so it moves nothing forward, and is logged."""
    if status in APIFRAME:
        return Status(status)
    log.warning("apiframe.unknown_status", status=status[:40])
    return Status.QUEUED
