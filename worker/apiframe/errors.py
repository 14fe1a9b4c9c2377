"""What can go wrong talking to Apiframe, as errors a caller can act on.

ApiframeError
├── TransportError            no usable answer: connection refused, reset or timed out (transient)
├── UnreadableAnswer          a 2xx whose body is not what Apiframe publishes (transient)
└── ApiframeStatusError       Apiframe answered with an error status
    ├── InvalidRequest        400, with `details` (field path to messages)
    ├── AuthenticationError   401, missing or invalid API key
    ├── InsufficientCredits   402, with `credits_required` and `credits_available`
    ├── Forbidden             403, inactive key, or a proxy's non-JSON refusal
    ├── JobNotFound           404
    ├── IdempotencyConflict   409, the same Idempotency-Key with another body
    ├── RateLimited           429, with `retry_after` seconds (transient)
    └── ServerError           5xx but 501 (transient)
"""

from typing import Any, ClassVar


class ApiframeError(Exception):
    """Anything that stopped a call to Apiframe from succeeding."""

    transient: ClassVar[bool] = False


class TransportError(ApiframeError):
    transient = True


class UnreadableAnswer(ApiframeError):
    transient = True


class ApiframeStatusError(ApiframeError):
    status: ClassVar[int] = 0

    def __init__(
        self, message: str, *, status: int, request_id: str | None = None, body: Any = None
    ) -> None:
        self.message = message
        self.status_code = status
        self.request_id = request_id
        self.body = body
        suffix = f" (x-request-id {request_id})" if request_id else ""
        super().__init__(f"Apiframe answered {status}: {message}{suffix}")


class InvalidRequest(ApiframeStatusError):
    @property
    def details(self) -> dict[str, Any]:
        details = self.body.get("details") if isinstance(self.body, dict) else None
        return details if isinstance(details, dict) else {}


class AuthenticationError(ApiframeStatusError):
    pass


class InsufficientCredits(ApiframeStatusError):
    @property
    def credits_required(self) -> int | None:
        return self.body.get("creditsRequired") if isinstance(self.body, dict) else None

    @property
    def credits_available(self) -> int | None:
        return self.body.get("creditsAvailable") if isinstance(self.body, dict) else None


class Forbidden(ApiframeStatusError):
    pass


class JobNotFound(ApiframeStatusError):
    pass


class IdempotencyConflict(ApiframeStatusError):
    pass


class RateLimited(ApiframeStatusError):
    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiframeStatusError):
    transient = True


BY_STATUS: dict[int, type[ApiframeStatusError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    402: InsufficientCredits,
    403: Forbidden,
    404: JobNotFound,
    409: IdempotencyConflict,
    429: RateLimited,
}


def error_class(status: int) -> type[ApiframeStatusError]:
    if status >= 500 and status != 501:  # 501 will not pass by waiting
        return ServerError
    return BY_STATUS.get(status, ApiframeStatusError)
