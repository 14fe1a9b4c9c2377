"""Who is calling `/v2/`, and how Apiframe refuses: `X-API-Key` (or `Authorization: Bearer`)
carrying a caller key, and errors as `{"error", "details"?}` with every field's messages a list."""

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.responses import error
from receiver.state import deps_of

CallerEndpoint = Callable[[Request, str], Awaitable[Response]]


def refusal(
    status: int,
    message: str,
    details: Mapping[str, str | list[str]] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Apiframe's error body; `details` maps a field's JSON path to its messages."""
    if details is not None:
        extra["details"] = {
            field: [said] if isinstance(said, str) else said for field, said in details.items()
        }
    headers = {"Retry-After": str(extra.pop("retry_after"))} if "retry_after" in extra else None
    return error(status, message, headers=headers, **extra)


def given_key(request: Request) -> str:
    key = request.headers.get("x-api-key")
    if key is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    return key


def with_caller(endpoint: CallerEndpoint) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint, called with the caller's name once its key is known; 401 otherwise, as
    Apiframe answers a missing or invalid key."""

    async def authenticated(request: Request) -> Response:
        key = given_key(request)
        if not key:
            return refusal(401, "Missing API key: send it in the X-API-Key header")
        caller = deps_of(request).callers.identify(key)
        if caller is None:
            return refusal(401, "Invalid API key")
        return await endpoint(request, caller)

    return authenticated
