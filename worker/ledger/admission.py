"""Whether a caller may queue another job, checked as its record is made (`lua/create.lua`,
`lua/admit.lua`): a bounded queue, and credits a day. A capped caller's job holds its likely
cost until it ends; `lua/move.lua` then settles it at what Apiframe charged."""

import json
import time
from dataclasses import dataclass
from typing import Any

from worker.ledger.records import text


def utc_day() -> str:
    """The day a caller's credits count against."""
    return time.strftime("%Y-%m-%d", time.gmtime())


@dataclass(frozen=True)
class Admission:
    """What a caller's next job is held to, as `lua/admit.lua` reads it."""

    caller: str
    model: str
    most: int  # jobs the caller may have waiting
    cap: float | None  # its credits a day, if it has a cap
    estimate: float  # what a job of a model not yet seen to cost holds

    def script_arg(self) -> str:
        kept = {"caller": self.caller, "model": self.model, "day": utc_day(), "most": self.most}
        if self.cap is not None:
            kept["cap"] = self.cap
        return json.dumps({**kept, "estimate": self.estimate})

    def refused(self, answer: list[Any]) -> "NotAdmitted":
        """`admit.lua`'s refusal as the exception that says it."""
        if text(answer[1]) == "waiting":
            return QueueFull(self.caller, int(answer[2]))
        return OverBudget(self.caller, float(answer[2]), float(answer[3]))


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
