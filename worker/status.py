"""The job status vocabulary and the rule that states only move forward."""

from enum import StrEnum


class Status(StrEnum):
    SUBMITTING = "SUBMITTING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    LANDED = "LANDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


# A status may only be replaced by one of a higher rank; terminal ones are never replaced.
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
TERMINAL = frozenset({Status.LANDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})
FAILURES = frozenset({Status.FAILED, Status.CANCELLED, Status.TIMED_OUT})


def can_move(current: Status, new: Status) -> bool:
    return current not in TERMINAL and RANK[new] > RANK[current]
