"""What every sink is: a name, and one attempt at sending one event."""

from dataclasses import dataclass
from typing import Protocol

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

    async def send(self, event_id: str, body: str) -> Sent:
        """One attempt; never raises for the far side's failure, which `Sent` reports."""
        ...
