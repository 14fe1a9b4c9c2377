"""How landing a job can fail: worth another try later, or final with a reason a person can read."""


class LandingError(Exception):
    """Landing a job did not succeed."""


class TransientError(LandingError):
    """Likely to pass: a timeout, a 5xx or 429, a broken connection. The task is retried later."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(LandingError):
    """Will not pass by retrying: an expired file, not an image, over the cap, a refused host,
    or a job Apiframe failed. The job ends FAILED with this reason."""
