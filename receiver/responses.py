"""The JSON error body every refusal carries: `{"error": message, ...details}`."""

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse


def error(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)
