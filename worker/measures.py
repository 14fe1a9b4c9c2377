"""Histograms kept in Redis, beside the ledger's counters, so every process's observations add up
in one place and any receiver's `/metrics` shows the same distribution.

Each histogram is one hash: a field per bucket's upper bound (not cumulative; `/metrics` sums
them), `+Inf` for the rest, and `sum`. An observation is two commands in the caller's pipeline.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio.client import Pipeline

KEY_PREFIX = "imagedock:histogram:"
KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Histogram:
    name: str  # the metric's name without the imagedock_ prefix
    help: str
    buckets: tuple[float, ...]

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    def bucket(self, value: float) -> str:
        return next((repr(bound) for bound in self.buckets if value <= bound), "+Inf")


WEBHOOK_ENQUEUE = Histogram(
    "webhook_enqueue_seconds",
    "From a completed job's webhook arriving to its landing being queued.",
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
LANDING_DURATION = Histogram(
    "landing_duration_seconds",
    "One landing: downloading a job's images and storing them in S3.",
    (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
LANDING_BYTES = Histogram(
    "landing_bytes",
    "Bytes a job landed in S3.",
    tuple(
        float(size) for size in (64 * KIB, 256 * KIB, MIB, 4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB)
    ),
)
HISTOGRAMS = (WEBHOOK_ENQUEUE, LANDING_DURATION, LANDING_BYTES)


def observe(pipe: Pipeline, histogram: Histogram, value: float) -> None:
    pipe.hincrby(histogram.key, histogram.bucket(value), 1)
    pipe.hincrbyfloat(histogram.key, "sum", value)


def cumulative(
    histogram: Histogram, raw: Mapping[str, str]
) -> tuple[list[tuple[str, float]], float]:
    """Prometheus's cumulative buckets and the sum, from a histogram's hash."""
    running, buckets = 0.0, []
    for bound in (*histogram.buckets, math.inf):
        label = "+Inf" if bound == math.inf else repr(bound)
        running += float(raw.get(label, 0))
        buckets.append((label, running))
    return buckets, float(raw.get("sum", 0))
