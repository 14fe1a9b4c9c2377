"""Whether a caller may queue another job (`SubmitQueue.admit`): a bounded queue, and credits
a day. A capped caller's job holds its likely cost until it ends; `lua/move.lua` then settles
it at what Apiframe charged."""

import time
from dataclasses import dataclass


def utc_day() -> str:
    """The day a caller's credits count against."""
    return time.strftime("%Y-%m-%d", time.gmtime())


@dataclass(frozen=True)
class Held:
    """Credits a job holds against its caller's credits for the day, until it ends."""

    caller: str
    day: str
    credits: float

    def fields(self) -> dict[str, str]:
        """What the record keeps of it, for `lua/move.lua` to settle when the job ends."""
        return {
            "credits_held": f"{self.credits:g}",
            "credits_day": self.day,
            "credits_caller": self.caller,
        }


class NotAdmitted(Exception):
    """A caller may not queue another job now."""


class QueueFull(NotAdmitted):
    retry_after = 60  # seconds: a queue that full drains by more than that in a minute

    def __init__(self, caller: str, waiting: int) -> None:
        super().__init__(
            f"{caller} has {waiting:,} jobs waiting to be submitted, the most it may have "
            "(IMAGEDOCK_WAITING_MAX): send more as they go"
        )


class OverBudget(NotAdmitted):
    """As Apiframe's 402 says it: the credits the job needs, and those left to the caller."""

    def __init__(self, caller: str, needed: float, left: float) -> None:
        super().__init__(
            f"Insufficient credits: {caller} has {left:g} of its credits for today left "
            f"(IMAGEDOCK_CALLER_CREDITS), and the job needs {needed:g}"
        )
        self.needed, self.left = whole(needed), whole(left)


def whole(credits: float) -> float | int:
    """Credits as Apiframe writes them: whole numbers without a fraction."""
    return int(credits) if credits.is_integer() else credits
