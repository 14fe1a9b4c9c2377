"""The faults the demo puts on its jobs, one a job, and the ending each one predicts.

Most of the simulator's knobs are read when a webhook goes out, a job finishes or a file is
downloaded, seconds after the submit and with other jobs in flight, so flipping a global knob
around one submission would hit whichever jobs happen to be running. Each fault is therefore
planned on the simulator (`Simulator.plan_next_job`) just before its job is submitted: the
simulator gives the job it creates next those knobs for its whole life, and no other job.
"""

from dataclasses import dataclass, field
from typing import Any

from worker.status import Status

KiB = 1024


@dataclass(frozen=True)
class Scenario:
    """One job's fault: its label, the simulator knobs that make it, and how the job must end."""

    fault: str
    knobs: dict[str, Any] = field(default_factory=dict)
    status: Status = Status.LANDED
    via: str | None = None  # how imagedock must learn the job finished, where only one way can

    def met_by(self, job: dict[str, Any]) -> bool:
        return job["status"] == self.status and self.via in (None, job["via"])

    @property
    def prediction(self) -> str:
        return f"{self.status} via {self.via}" if self.via else str(self.status)


# In this order, any 8 jobs show every fault the README promises imagedock survives.
SCENARIOS = (
    Scenario("dropped webhooks", {"drop_rate": 1.0}, via="poll"),
    Scenario("duplicated webhooks", {"duplicates": 3}),
    Scenario("early webhook", {"early": True}),
    Scenario("unsigned webhooks", {"unsigned": True}),
    Scenario(
        "failed at Apiframe",
        {"failure_rate": 1.0, "failure_message": "The prompt was refused by the content policy."},
        status=Status.FAILED,
    ),
    Scenario("slow download", {"cdn_chunk_delay": 0.15, "image_bytes": 512 * KiB}),
    Scenario("forged signatures", {"wrong_signature": True}, via="poll"),
    Scenario("none"),
    Scenario("stale progress", {"reorder": True}),
    Scenario("CDN 503 once", {"cdn_fail_first": 1}),
)
# The real Apiframe takes no faults: every job should simply land.
REAL = Scenario("none (real Apiframe)")


def planned(count: int, *, simulated: bool) -> list[Scenario]:
    """The scenario of each of `count` jobs, in submission order."""
    if not simulated:
        return [REAL] * count
    return [SCENARIOS[n % len(SCENARIOS)] for n in range(count)]
