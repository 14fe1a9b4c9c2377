"""The JSON error body every refusal carries: `{"error": message, ...details}`."""

from typing import Any

from starlette.responses import JSONResponse


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)
