"""What every sink is: a name, which events it takes, and one attempt at sending one."""

from dataclasses import dataclass
from typing import Protocol

from worker.ledger.records import JobRecord

EXCERPT = 500  # characters of a failed answer a dead letter keeps


@dataclass(frozen=True)
class Sent:
    """How one attempt went."""

    ok: bool
    status: int | None = None  # the answer's status, where the sink has one
    excerpt: str = ""  # the start of what came back, or of the error
    retry_after: float | None = None  # when the sink asked to be tried again


class Sink(Protocol):
    @property
    def name(self) -> str:
        """Unique among the sinks and stable across restarts; safe in logs and keys."""
        ...

    @property
    def blocked_by(self) -> str | None:
        """The missing setting that keeps this sink from sending, or None."""
        ...

    def serves(self, record: JobRecord | None, event_type: str) -> bool:
        """Whether this sink sends the event `event_type` of the job `record` at all (None: the
        record is gone)."""
        ...

    async def send(self, event_id: str, body: str, record: JobRecord | None) -> Sent:
        """One attempt at sending the event `body` (imagedock's, as the stream holds it) of
        the job `record`; never raises for the far side's failure, which `Sent` reports."""
        ...
