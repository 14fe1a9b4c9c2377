"""Every Redis key imagedock writes, in one place (arq's own keys are arq's: `arq.constants`).

A reader finds the whole schema here. Names that end in `:` are prefixes: the functions below
complete them. Lua scripts receive the prefixes they need in the ledger's script config, never
spell a key of their own.
"""

import hashlib
import re

PREFIX = "imagedock:"
REF = re.compile(r"[0-9a-f]{32}")  # the shape of every ref imagedock mints


def is_ref(value: str) -> bool:
    return REF.fullmatch(value) is not None


# One job: its record (a hash), its objects (a hash: index -> JSON), its log (a stream).
JOB = PREFIX + "job:"
OBJECTS = PREFIX + "objects:"
JOB_LOG = PREFIX + "log:"
JOB_ID = PREFIX + "jobid:"  # Apiframe's job id -> ref
IDEMPOTENCY = PREFIX + "idem:"  # a caller's Idempotency-Key (or a tracked job id) -> ref

# The job list: sorted sets ref -> creation time, every record and by status and by model.
BY_TIME = PREFIX + "jobs"
BY_STATUS = PREFIX + "jobs:status:"
BY_MODEL = PREFIX + "jobs:model:"
MODELS_SEEN = PREFIX + "models"  # the models with an index, so the retention can trim each
BY_CALLER = PREFIX + "jobs:caller:"  # + a `/v2/` caller's name: its jobs
CALLERS_SEEN = PREFIX + "callers"  # the callers with an index

GLOBAL_LOG = PREFIX + "log"  # every job's log entries, for dashboards
# + job id: marks that expire, so what anyone may ask for often happens once an interval.
CONFIRMING = PREFIX + "confirming:"  # an unsigned webhook's confirmation with Apiframe
REPLAYING = PREFIX + "replaying:"  # a replay of the job's landing and events
POLL_SET = PREFIX + "poll"  # sorted set: ref -> when the poller should next ask Apiframe
# Sorted set: ref -> when a job ended, until its record and log are compacted (its timeline
# written to S3 and a summary left: `worker.ledger.compaction`).
COMPACT = PREFIX + "compact"

# The submit queue (`worker.ledger.waiting`): jobs accepted but not yet sent to Apiframe, a
# sorted set per caller (ref -> priority band and arrival), served round-robin.
WAITING = PREFIX + "waiting:"  # + caller: its jobs waiting to be submitted
WAITING_CALLERS = PREFIX + "waiting:callers"  # list: the callers with jobs waiting, in turn
ARRIVALS = PREFIX + "waiting:arrivals"  # counter: the order jobs arrived in
SENDING = PREFIX + "sending"  # sorted set: ref -> when its sender's lease ends
IN_FLIGHT = PREFIX + "inflight"  # sorted set: ref -> when Apiframe took it; until it finishes
IN_FLIGHT_OF = PREFIX + "inflight:"  # + caller: its jobs being sent or at Apiframe, unfinished
PACE = PREFIX + "pace"  # hash: the submit rate in force, the next send's time, a pause and why
# A caller's credits a day: what its jobs hold or spent, per UTC day (a hash: caller -> credits),
# and what a job of each model last cost (a hash: model -> credits), which a new job holds.
CREDITS_DAY = PREFIX + "credits:day:"  # + YYYY-MM-DD
CREDIT_COSTS = PREFIX + "credits:cost"
# Bulk replays (`worker.replays`): each one's progress (a hash) and selection (a list of refs),
# and the one running now.
BULK = PREFIX + "bulk:"
BULK_RUNNING = PREFIX + "bulk:running"
STATS = PREFIX + "stats"  # hash: every counter of `worker.metrics`
HISTOGRAM = PREFIX + "histogram:"  # + a histogram's name: a hash of its buckets and sum
WORKERS = PREFIX + "workers"  # sorted set: host:pid -> time of the worker's last heartbeat

# Downstream events: each stored once, streamed, delivered per sink.
EVENT = PREFIX + "event:"
EVENTS = PREFIX + "events"
DEAD_LETTERS = PREFIX + "events:dead"
ATTEMPTS = PREFIX + "attempts:"
DELIVERED = PREFIX + "delivered:"

# The demo's database (`imagedock demo`): a marker kept for good (a database holding keys but no
# marker is not the demo's, and is left alone), and the running demo's lease.
DEMO = PREFIX + "demo"
DEMO_RUNNING = PREFIX + "demo:running"

# arq's queues (arq keeps its jobs under its own prefixes).
LANDING_QUEUE = PREFIX + "landing"
POLLING_QUEUE = PREFIX + "polling"


def job(ref: str) -> str:
    return JOB + ref


def objects(ref: str) -> str:
    return OBJECTS + ref


def job_log(ref: str) -> str:
    return JOB_LOG + ref


def job_id(apiframe_job_id: str) -> str:
    return JOB_ID + apiframe_job_id


def confirming(apiframe_job_id: str) -> str:
    return CONFIRMING + apiframe_job_id


def waiting(caller: str) -> str:
    return WAITING + caller


def bulk(bulk_id: str) -> str:
    return BULK + bulk_id


def bulk_refs(bulk_id: str) -> str:
    return f"{BULK}{bulk_id}:refs"


def credits_day(day: str) -> str:
    return CREDITS_DAY + day


def replaying(apiframe_job_id: str) -> str:
    return REPLAYING + apiframe_job_id


def idempotency(key: str) -> str:
    return IDEMPOTENCY + key


def by_status(status: str) -> str:
    return BY_STATUS + status


def by_model(model: str) -> str:
    return BY_MODEL + model


def by_caller(caller: str) -> str:
    return BY_CALLER + caller


def histogram(name: str) -> str:
    return HISTOGRAM + name


def event(event_id: str) -> str:
    return EVENT + event_id


def attempts(event_id: str, sink: str) -> str:
    """A delivery's attempt count, per event and sink (named by digest: a sink's name may be
    long)."""
    return f"{ATTEMPTS}{event_id}:{digest(sink)}"


def delivered(event_id: str, sink: str) -> str:
    return f"{DELIVERED}{event_id}:{digest(sink)}"


def digest(name: str) -> str:
    """A short, stable stand-in for a name that must not appear in a key or a log line itself."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]
