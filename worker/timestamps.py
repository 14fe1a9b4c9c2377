"""Times as imagedock and Apiframe write them: ISO 8601, UTC, milliseconds, a trailing Z."""

import time
from datetime import UTC, datetime


def iso_time(moment: float | None = None) -> str:
    """`moment` (seconds since the epoch; now if omitted) as `2026-03-15T10:00:32.000Z`."""
    when = datetime.fromtimestamp(time.time() if moment is None else moment, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
