"""A signed webhook, decided and recorded in one Redis call: the script finds the submission by
ref or job id, checks the job id, records the webhook's time and pushes back the poll, writes the
log entry, moves the state forward, queues the landing in arq's own format, and counts the
outcome. The rare paths (no record, no job id yet, a failure to finish) are answered as such, and
the caller takes them the longer way."""

import time
from dataclasses import dataclass
from typing import Literal

from worker.apiframe import WebhookEvent
from worker.apiframe.results import dumps
from worker.ledger.batching import BatchedScript
from worker.ledger.ledger import Ledger, move_fields
from worker.ledger.log import echo
from worker.ledger.records import text
from worker.ledger.scripts import source
from worker.metrics import WEBHOOK_ENQUEUE
from worker.runtime.queue import landing_job
from worker.status import Status

ACTOR = "receiver"
Decision = Literal["accepted", "duplicate", "unknown", "early", "other_job", "finish"]


@dataclass(frozen=True)
class Taken:
    outcome: Decision
    ref: str
    queued: bool
    trace: str = ""  # the job's trace context, where the webhook moved it


class Intake:
    def __init__(self, ledger: Ledger, poll_after: float) -> None:
        self.ledger = ledger
        self.poll_after = poll_after
        self._script = BatchedScript(ledger.redis, source("webhook"))

    async def take(
        self, ref: str | None, event: WebhookEvent, variant: str, *, waited: float
    ) -> Taken:
        """Record a signed webhook for the submission `ref` (or the one holding its job id);
        `waited` is how long it has been in hand, observed if it queues a landing."""
        now = time.time()
        status = Status(event.status)
        fields: dict[str, object] = {}
        progress: int | str = "" if event.progress is None else event.progress
        if status == Status.COMPLETED:
            fields = {"assets": dumps(event.assets), "via": "webhook"}
            if event.credit_cost is not None:
                fields["credit_cost"] = event.credit_cost
            progress = 100
        landing = landing_job(event.job_id).script_args() if status == Status.COMPLETED else []
        args = [
            self.ledger.script_config(),
            ref or "",
            event.job_id,
            status.value,
            str(progress),
            move_fields(status, fields),
            now,
            now + self.poll_after,
            variant,
            WEBHOOK_ENQUEUE.key,
            WEBHOOK_ENQUEUE.bucket(waited),
            waited,
            *landing,
        ]
        outcome, found, before, queued, *trace = await self._script(args)
        taken = Taken(
            text(outcome),  # type: ignore[arg-type]
            text(found) or "",
            bool(int(queued)),
            text(trace[0]) or "" if trace else "",
        )
        if taken.outcome in ("accepted", "finish"):  # as the script logged it
            detail = {"status": event.status, "variant": variant}
            echo("webhook.accepted", taken.ref, event.job_id, ACTOR, detail)
        if taken.outcome == "accepted" and text(before) != status.value:
            echo(
                "status.changed",
                taken.ref,
                event.job_id,
                ACTOR,
                {"from": text(before), "to": status},
            )
        return taken
