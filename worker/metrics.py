"""Every metric imagedock keeps, declared once, and the one read of them from Redis.

Counters and histograms live in Redis, so every process's work adds up in one place and any
receiver's `/metrics` shows the same numbers. A counter is a field of the `STATS` hash (a
labelled one, a field per label value: `landed:<model>`); the fields are those imagedock always
used, so counts kept before survive an upgrade. Code increments a declaration, never a string:
`ledger.count(JOBS_LANDED(model))` in Python, `c.counters.webhooks_received` in Lua (the ledger's
script config carries the fields). Gauges are read from the state itself when `/metrics` is
scraped. `receiver/metrics.py` renders exactly what is declared here.
"""

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from worker.apiframe.results import Kind
from worker.ledger import keys
from worker.ledger.records import text
from worker.status import UNFINISHED, Status

KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Counter:
    name: str  # without the `imagedock_` prefix and the `_total` suffix
    help: str
    field: str  # in the STATS hash; a labelled counter's fields are this and a label value
    label: str | None = None
    always: tuple[str, ...] = ()  # label values rendered even before their first count

    def __call__(self, value: str, by: int = 1) -> "Labelled":
        """This counter for one label value, to be increased `by` so much."""
        assert self.label is not None, f"{self.name} has no label"
        return Labelled(self, value, by)


@dataclass(frozen=True)
class Labelled:
    counter: Counter
    value: str
    by: int = 1


Counted = Counter | Labelled


def field_of(counted: Counted) -> str:
    """The STATS field an increment adds to."""
    if isinstance(counted, Labelled):
        return counted.counter.field + counted.value
    assert counted.label is None, f"{counted.name} needs its {counted.label}"
    return counted.field


@dataclass(frozen=True)
class Histogram:
    """One hash in Redis: a field per bucket's upper bound (not cumulative: rendering sums them),
    `+Inf` for the rest, and `sum`. An observation is two commands in the caller's pipeline."""

    name: str  # without the `imagedock_` prefix
    help: str
    buckets: tuple[float, ...]

    @property
    def key(self) -> str:
        return keys.histogram(self.name)

    def bucket(self, value: float) -> str:
        return next((repr(bound) for bound in self.buckets if value <= bound), "+Inf")


@dataclass(frozen=True)
class Gauge:
    name: str  # without the `imagedock_` prefix
    help: str
    label: str | None = None


JOBS_SUBMITTED = Counter("jobs_submitted", "Jobs recorded.", "submitted")
JOBS_LANDED = Counter("jobs_landed", "Jobs landed, by model.", "landed:", "model")
# Bounded by IMAGEDOCK_CALLER_KEYS: only a configured caller's key submits through `/v2/`.
CALLER_JOBS = Counter("caller_jobs", "Jobs submitted through /v2/, by caller.", "caller:", "caller")
JOBS_FAILED = Counter("jobs_failed", "Jobs failed, by model.", "failed:", "model")
JOBS_LANDED_VIA_POLL = Counter(
    "jobs_landed_via_poll",
    "Jobs landed because the poller found them finished: their webhook never came.",
    "landed_via_poll",
)
WEBHOOKS_MISSED = Counter(
    "webhooks_missed", "Jobs the poller found finished with no webhook.", "webhook_missed"
)
# Rendered with one more outcome, `rejected`: the sum of WEBHOOKS_REJECTED.
WEBHOOKS_RECEIVED = Counter(
    "webhooks_received",
    "Webhooks, by outcome.",
    "webhook:",
    "outcome",
    always=("accepted", "duplicate", "early", "unsigned"),
)
WEBHOOKS_REJECTED = Counter(
    "webhooks_rejected", "Webhooks refused, by reason.", "webhook_rejected:", "reason"
)
EVENT_DELIVERIES = Counter(
    "event_deliveries",
    "Downstream event deliveries.",
    "delivery:",
    "outcome",
    always=("delivered", "retried", "dead"),
)
FILES_LANDED = Counter(
    "files_landed",
    "Files landed in S3, by kind (image, grid, video, audio, cover, stem).",
    "file:",
    "kind",
    always=tuple(kind.value for kind in Kind),
)
# Apiframe refunds a job that fails: what it charged is the `creditCost` of the jobs landed.
CREDITS_BY_MODEL = Counter(
    "credits_spent", "Credits Apiframe charged for the jobs landed, by model.", "credits:", "model"
)
CREDITS_BY_ROUTE = Counter(
    "credits_spent_by_route",
    "Credits Apiframe charged for the jobs landed, by route (images/generate, videos/generate...).",
    "credits_route:",
    "route",
)
CREDITS_BY_CALLER = Counter(
    "credits_spent_by_caller",
    "Credits Apiframe charged for the jobs landed, by caller (operator: imagedock's own API).",
    "credits_caller:",
    "caller",
)
COUNTERS = (
    JOBS_SUBMITTED,
    CREDITS_BY_MODEL,
    CREDITS_BY_ROUTE,
    CREDITS_BY_CALLER,
    CALLER_JOBS,
    FILES_LANDED,
    JOBS_LANDED,
    JOBS_FAILED,
    JOBS_LANDED_VIA_POLL,
    WEBHOOKS_MISSED,
    WEBHOOKS_RECEIVED,
    WEBHOOKS_REJECTED,
    EVENT_DELIVERIES,
)

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

JOBS = Gauge("jobs", "Records by status.", "status")
OLDEST_UNFINISHED = Gauge(
    "oldest_unfinished_job_age_seconds", "Age of the oldest job not yet final."
)
JOB_DEADLINE = Gauge(
    "job_deadline_seconds",
    "The age by which the poller ends every job, landed or not: older is stuck.",
)
DEAD_LETTERS = Gauge("events_dead_letters", "Event deliveries that exhausted retries.")
JOBS_POLLED = Gauge("jobs_polled", "Unfinished jobs the poller is watching.")
QUEUE_DEPTH = Gauge("queue_depth", "arq jobs waiting.", "queue")
LAST_HEARTBEAT = Gauge(
    "worker_last_heartbeat_timestamp_seconds",
    "When the most recent worker heartbeat was (Unix time; 0 if none).",
)
WORKERS_ALIVE = Gauge("workers_alive", "Workers whose heartbeat is fresh.")
SUBMIT_WAITING = Gauge(
    "submit_waiting", "Jobs accepted and waiting to be sent to Apiframe, by caller.", "caller"
)
SUBMIT_IN_FLIGHT = Gauge(
    "submit_in_flight", "Jobs sent to Apiframe (or being sent) and not yet finished there."
)
SUBMIT_RATE = Gauge("submit_rate", "Submits a second in force: the limit, or less after a 429.")
SUBMIT_PAUSED = Gauge(
    "submit_paused_seconds",
    "Seconds left of a pause of submitting (Apiframe's 429, 402, 503 or a refused key).",
)
CREDITS_AVAILABLE = Gauge(
    "credits_available", "Apiframe's balance for imagedock's key, as last read (NaN: not yet)."
)
CREDITS_ALERT = Gauge(
    "credits_alert_threshold", "IMAGEDOCK_CREDITS_ALERT: a balance below it is low (0: never)."
)
CALLER_CREDITS_TODAY = Gauge(
    "caller_credits_today",
    "Credits a capped caller's jobs hold or spent this UTC day (IMAGEDOCK_CALLER_CREDITS).",
    "caller",
)
GAUGES = (
    JOBS,
    OLDEST_UNFINISHED,
    JOB_DEADLINE,
    DEAD_LETTERS,
    JOBS_POLLED,
    QUEUE_DEPTH,
    LAST_HEARTBEAT,
    WORKERS_ALIVE,
    SUBMIT_WAITING,
    SUBMIT_IN_FLIGHT,
    SUBMIT_RATE,
    SUBMIT_PAUSED,
    CREDITS_AVAILABLE,
    CREDITS_ALERT,
    CALLER_CREDITS_TODAY,
)

QUEUES = {"landing": keys.LANDING_QUEUE, "polling": keys.POLLING_QUEUE}


def script_fields() -> dict[str, str]:
    """Each counter's field (a labelled one's prefix) by name, for the ledger's Lua scripts."""
    return {counter.name: counter.field for counter in COUNTERS}


def queue_counts(
    pipe: Pipeline, counted: tuple[Counted, ...], observed: Mapping[Histogram, float] | None
) -> None:
    """Add to each counter (one, or a labelled count's `by`) and record each observation, in
    `pipe`."""
    for each in counted:
        pipe.hincrby(keys.STATS, field_of(each), each.by if isinstance(each, Labelled) else 1)
    for histogram, value in (observed or {}).items():
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


@dataclass(frozen=True)
class Figures:
    """Every figure the operator's view shows, read at `read_at`."""

    fields: dict[str, int]  # the STATS hash
    by_status: dict[Status, int]
    oldest_unfinished: float | None  # when the oldest unfinished record was made
    polled: int
    dead_letters: int
    queues: dict[str, int]  # arq jobs waiting, by queue
    heartbeats: dict[str, float]  # each worker's last beat
    histograms: dict[Histogram, dict[str, str]]
    read_at: float

    def count(self, counter: Counter) -> int:
        return self.fields.get(counter.field, 0)

    def labelled(self, counter: Counter) -> dict[str, int]:
        """A labelled counter's counts, by label value; `always` values at least 0."""
        found = dict.fromkeys(counter.always, 0)
        for name, count in sorted(self.fields.items()):
            if name.startswith(counter.field):
                found[name.removeprefix(counter.field)] = count
        return found

    def total(self, counter: Counter) -> int:
        return sum(self.labelled(counter).values())


async def read_figures(redis: Redis) -> Figures:
    """Every figure, in one pipelined round trip, so whichever receiver answers, they agree."""
    unfinished = sorted(UNFINISHED)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.STATS)
        for status in Status:
            pipe.zcard(keys.by_status(status.value))
        for status in unfinished:
            pipe.zrange(keys.by_status(status.value), 0, 0, withscores=True)
        pipe.zcard(keys.POLL_SET)
        pipe.llen(keys.DEAD_LETTERS)
        for queue in QUEUES.values():
            pipe.zcard(queue)
        pipe.zrange(keys.WORKERS, 0, -1, withscores=True)
        for histogram in HISTOGRAMS:
            pipe.hgetall(histogram.key)
        answers = iter(await pipe.execute())
    fields = {text(k) or "": int(v) for k, v in next(answers).items()}
    by_status = {status: int(next(answers)) for status in Status}
    firsts = [score for _ in unfinished for _, score in next(answers)]
    polled, dead = int(next(answers)), int(next(answers))
    queues = {name: int(next(answers)) for name in QUEUES}
    beats = {text(member) or "": score for member, score in next(answers)}
    histograms = {
        histogram: {text(k) or "": text(v) or "0" for k, v in next(answers).items()}
        for histogram in HISTOGRAMS
    }
    return Figures(
        fields,
        by_status,
        min(firsts) if firsts else None,
        polled,
        dead,
        queues,
        beats,
        histograms,
        time.time(),
    )
