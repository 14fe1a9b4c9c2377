"""Refusing a webhook costs a fixed, small amount, however many come: one counter in Redis per
refusal (`imagedock_webhooks_rejected_total{reason}`), and a sampled log line whose client
strings are cut short. Nothing a refused client sends is stored."""

import time
from collections import Counter
from typing import Literal

import structlog
from starlette.responses import JSONResponse

from receiver.responses import error
from worker import metrics
from worker.ledger.ledger import Ledger

Reason = Literal[
    "too_large",
    "slow_body",
    "media_type",
    "bad_body",
    "bad_ref",
    "bad_signature",
    "unknown_job",
    "other_job",
    "disconnected",
]
CLIENT_TEXT = 80  # characters of a client's string that a log line keeps
log = structlog.get_logger("webhooks")


def clip(value: object) -> object:
    if isinstance(value, str) and len(value) > CLIENT_TEXT:
        return value[:CLIENT_TEXT] + f"...({len(value)} chars)"
    return value


class Rejections:
    """Counts every refusal; logs at most one per reason per `interval` seconds, saying how many
    it left out since the last."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._logged_at: dict[str, float] = {}
        self._left_out: Counter[str] = Counter()

    async def refuse(
        self,
        ledger: Ledger,
        status: int,
        reason: Reason,
        message: str,
        *,
        counted: bool = False,
        **client: object,
    ) -> JSONResponse:
        if not counted:
            await ledger.count(metrics.WEBHOOKS_REJECTED(reason))
        now = time.monotonic()
        if now - self._logged_at.get(reason, -self.interval) >= self.interval:
            self._logged_at[reason] = now
            left_out = self._left_out.pop(reason, 0)
            sample = {name: clip(value) for name, value in client.items()}
            log.warning(
                "webhook.rejected", reason=reason, status=status, left_out=left_out, **sample
            )
        else:
            self._left_out[reason] += 1
        return error(status, message)
