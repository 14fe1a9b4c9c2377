"""What a missed target comes from, said with the run's own figures: read from a result's rows and
round tables when BENCHMARKS.md is written, so the explanation always matches the numbers."""

import re
import statistics
from collections.abc import Callable

from benchmarks.results import Result
from worker.runtime.tasks import LANDING_POLL_DELAY


def rounds_column(result: Result, heading: str, server: str, column: str) -> float | None:
    """The median of `column` for `server` in the round table whose block starts `heading`."""
    for block in result.details:
        if not block.startswith(heading):
            continue
        lines = [line for line in block.splitlines() if line.startswith("|")]
        header = [cell.strip() for cell in lines[0].strip("|").split("|")]
        if column not in header:
            return None
        values = []
        for line in lines[2:]:
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if cells[0] == server:
                values.append(float(cells[header.index(column)]))
        return statistics.median(values) if values else None
    return None


def row_value(result: Result, figure: str) -> float | None:
    for row in result.rows:
        if row.figure.startswith(figure):
            found = re.match(r"[\d,.]+", row.value)
            return float(found.group().replace(",", "")) if found else None
    return None


def row_reference(result: Result, figure: str) -> float | None:
    for row in result.rows:
        if row.figure.startswith(figure):
            found = re.match(r"[\d,.]+", row.reference_value)
            return float(found.group().replace(",", "")) if found else None
    return None


def webhooks(result: Result) -> list[str]:
    fresh = "Rounds, (a) fresh webhooks"
    floor_name = "reference + one Redis call"
    cpu = rounds_column(result, fresh, "imagedock receiver", "server CPU ms/req")
    floor_cpu = rounds_column(result, fresh, floor_name, "server CPU ms/req")
    bare_cpu = rounds_column(result, fresh, "reference", "server CPU ms/req")
    redis_cpu = rounds_column(result, fresh, "imagedock receiver", "Redis CPU ms/req")
    floor_redis = rounds_column(result, fresh, floor_name, "Redis CPU ms/req")
    rate = row_value(result, "(a) fresh completed webhook: requests/s")
    floor_rate = row_reference(result, "(a) fresh completed webhook: requests/s")
    if cpu is None or floor_cpu is None or not rate or not floor_rate:
        return []
    pieces = piece_total(result)
    said = [
        f"**Why (a) falls short.** The receiver is CPU-bound in its one process: {cpu:.3f} ms "
        f"of CPU per webhook ({rate:.0f}/s x {cpu:.3f} ms = {rate * cpu / 1000:.2f} of a "
        f"core), against the floor's {floor_cpu:.3f} ms (and the bare endpoint's "
        f"{bare_cpu or 0:.3f} ms); Redis spends {redis_cpu or 0:.3f} ms per webhook on the "
        f"intake script, against {floor_redis or 0:.3f} ms for the floor's one SET. 0.9 of the "
        f"floor's {floor_rate:.0f}/s would need at most {1000 / (0.9 * floor_rate):.3f} ms a "
        f"webhook: {cpu - 1000 / (0.9 * floor_rate):.3f} ms less than now."
    ]
    if pieces is not None:
        said.append(
            f"That difference is the work the floor leaves out, timed piece by piece in the "
            f"table below: {pieces / 1000:.3f} ms of the {cpu - floor_cpu:.3f} ms between the "
            "two; the rest is spread through the request's handling (the body read under its "
            "deadline, the query's ref, the security headers uvicorn writes with the answer, "
            "the event loop's turns), a few percent each in the profile below. Each piece is "
            "what the endpoint is for: "
            "a forged webhook refused before anything is written (the HMACs), a body of the "
            "wrong shape refused with the field named, the move, its log entries and the "
            "landing's arq job written in the one script call. Concurrent webhooks already "
            "share one pipelined round trip (`worker/ledger/batching.py`): the floor's plain "
            "redis-py call costs it more than the receiver's batched one costs the receiver."
        )
    one = row_value(result, "(a) 1 receiver processes")
    two = row_value(result, "(a) 2 receiver processes")
    if one and two:
        said.append(
            f"Scale-up: 2 receiver processes made {two / one:.2f}x the requests of one, with the "
            f"load average at {result.loadavg[-1]:.1f} on 2 cores at the end of this benchmark. "
            "A second process can only use a core nobody else is using: here Redis and wrk "
            "held them. More processes do not lower the CPU per webhook."
        )
    said.append(
        "The p99 target at 50 connections is a throughput target in disguise: wrk keeps 50 "
        "requests in flight, so the median latency is about 50 / (requests/s) and the p99 "
        "higher still, the floor's own included; at 4 connections (the light-load rows) the "
        "receiver's p99 is a few ms."
    )
    return said


def piece_total(result: Result) -> float | None:
    """The `in all` of the pieces table, in µs."""
    for block in result.details:
        if block.startswith("What the receiver does to a fresh webhook"):
            found = re.search(r"\| in all \| ([\d.]+) \|", block)
            return float(found.group(1)) if found else None
    return None


def landing(result: Result) -> list[str]:
    if not any(row.figure.endswith("against the floor") for row in result.rows):
        return []
    return [
        "What a landing does beyond a copy: per image, the ledger's record of the object and "
        "its two log entries in one round trip, its type checked from its first bytes, and "
        "every byte hashed once (SHA-256: the record's digest, which S3 checks in a signed "
        "header; boto3 signs no payload, so it hashes nothing again); per job, the record "
        "read in one script call, the manifest written with a second create-only PUT, the "
        "LANDED move read back in the same call, the landed entry with its counters, the event "
        "published and logged in one script call, and arq's own claim and finish. The worker "
        f"picks a job up within its {LANDING_POLL_DELAY:g} s `poll_delay`. The manifest's PUT "
        "costs as much of boto3's CPU as the image's own: at 256 KiB it is most of what "
        "separates imagedock from the bare copy, which the floor (the copy writing a second "
        "small object per image) shows; at 4 MiB the transfer dominates both."
    ]


def end_to_end(result: Result) -> list[str]:
    p50 = row_value(result, "webhook to `job.landed`, less `landing_ms`: p50")
    floor = row_reference(result, "webhook to `job.landed`, less `landing_ms`: p50")
    if p50 is None or floor is None:
        return []
    return [
        f"**Why p50 falls short.** A landing cannot start before arq's worker next polls its "
        f"queue: the floor alone, an enqueue to a no-op job starting with the same "
        f"`poll_delay` of {LANDING_POLL_DELAY:g} s, has a median of {floor:.1f} ms, over the "
        f"20 ms target before imagedock does anything. imagedock's own share of the median is "
        f"{p50 - floor:.1f} ms: the intake (the first row of the table), the landing task "
        "reading the record by job id, and the counters and log written after `landing_ms` stops."
    ]


def redis_memory(result: Result) -> list[str]:
    """Said whatever the targets: this benchmark has none."""
    tracked = row_value(result, "memory kept per tracked job")
    stream = None
    for block in result.details:
        for line in block.splitlines():
            if line.startswith("| `imagedock:log:<ref>`"):
                stream = float(line.split("|")[2].strip().replace(",", ""))
    if not tracked or stream is None:
        return []
    return [
        f"Of the {tracked:,.0f} bytes a tracked job keeps, its own log stream "
        f"(`imagedock:log:<ref>`) takes {stream:,.0f}, for a few short entries: Redis 7.0 "
        "allocates a stream's first node at `stream-node-max-bytes` (4 KiB by default) however "
        "little it holds. With `stream-node-max-bytes 1024` a one-entry stream took 1,656 "
        "bytes instead of 4,728 on this machine's Redis; or the job's log could live in the "
        "job's hash or a list."
    ]


EXPLAIN: dict[str, Callable[[Result], list[str]]] = {
    "webhooks": webhooks,
    "landing": landing,
    "end_to_end": end_to_end,
}


def explain(result: Result) -> list[str]:
    """Paragraphs on the shortfalls of `result`, if it missed a target (and what the Redis
    cost comes from, which has no target)."""
    if result.name == "redis_cost":
        return redis_memory(result)
    if not any(row.met is False for row in result.rows):
        return []
    said = EXPLAIN.get(result.name)
    return said(result) if said else []
