"""The JSON error body every refusal carries: `{"error": message, ...details}`."""

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

from worker.ledger.admission import NotAdmitted, OverBudget, QueueFull


def error(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def not_admitted(exc: NotAdmitted) -> JSONResponse:
    """A caller whose credits for the day are spent (402, with Apiframe's fields), or whose
    queue is full (429)."""
    if isinstance(exc, OverBudget):
        return error(402, str(exc), creditsRequired=exc.needed, creditsAvailable=exc.left)
    return error(429, str(exc), headers={"Retry-After": str(QueueFull.retry_after)})
