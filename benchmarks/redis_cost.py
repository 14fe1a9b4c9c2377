"""Redis's cost per job: the commands clients send and Redis executes, and the memory kept, for a
tracked job (`POST /jobs` through `imagedock receiver`: recorded, submitted, attached, watched)
and for a landed one (its signed `completed` webhook, the landing by `imagedock worker`, the
LANDED move and its event); against one arq job, enqueued and run by a bare arq worker.

Commands are counted twice: as clients send them (MONITOR, less the lines scripts run, which
MONITOR marks `lua`), and as Redis executes them (INFO commandstats, script-internal calls
included). The workers poll Redis while idle; that rate, measured with nothing to do, is taken
off. Memory is `used_memory` before and after, in a pass of its own without MONITOR (whose
output buffers Redis counts as used memory). The simulator drops its own webhooks, so only the
ones the benchmark sends arrive; polls are due in ten minutes, after the run.

`python -m benchmarks.redis_cost [--out FILE] [--quick]`
"""

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks import arq_floor
from benchmarks.ledger_state import MODEL
from benchmarks.processes import API_KEY, API_TOKEN, PYTHON, redis_info, start, stop
from benchmarks.results import Row, begin, say, table
from benchmarks.stack import Landable, Stack, landed_count, send_all, stack, until_landed, worker
from worker.ledger import keys
from worker.ledger.keys import EVENTS, GLOBAL_LOG
from worker.ledger.ledger import DEFAULT_RETENTION
from worker.ledger.log import GLOBAL_LOG_MAXLEN
from worker.ledger.records import text
from worker.ledger.waiting import OPERATOR
from worker.runtime.queue import connect
from worker.settings import Settings

JOBS = 1000
MONITORED = 200
IDLE_SECONDS = 5.0
# What this benchmark itself sends while it waits (imagedock sends none of them meanwhile).
DRIVER = frozenset({"ECHO", "INFO", "ZCARD", "HLEN", "XLEN", "MEMORY"})


@dataclass(frozen=True)
class Cost:
    sent: float  # commands clients sent, per job
    executed: float  # commands Redis executed, scripts' included, per job
    by_command: dict[str, float]  # sent, per job, by command


@contextmanager
def monitored(url: str) -> Iterator[Callable[[], Counter[str]]]:
    """MONITOR into a file while the block runs; call the yielded function after the block for
    the commands clients sent to the URL's database, by name (no `lua` lines)."""
    directory = Path(tempfile.mkdtemp(prefix="imagedock-bench-monitor-"))
    out = directory / "monitor.txt"
    database = url.rsplit("/", 1)[1]
    with out.open("wb") as sink:
        process = subprocess.Popen(["redis-cli", "-u", url, "monitor"], stdout=sink)  # noqa: S603, S607
    client = redis.Redis.from_url(url)
    marker = f"bench-start-{time.time()}"
    deadline = time.monotonic() + 10
    while marker not in out.read_text(errors="replace"):
        client.echo(marker)
        if time.monotonic() > deadline:
            raise RuntimeError("MONITOR did not start")
        time.sleep(0.05)
    seen: Counter[str] = Counter()
    try:
        yield lambda: seen
        end = f"bench-end-{time.time()}"
        client.echo(end)
        deadline = time.monotonic() + 30
        while end not in out.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError("MONITOR fell behind")
            time.sleep(0.05)
        counting = False
        for line in out.read_text(errors="replace").splitlines():
            if marker in line:
                counting = True
                continue
            if end in line:
                break
            source, _, command = line.partition("] ")
            if not counting or f"[{database} " not in source or " lua" in source:
                continue
            name = command.split(" ", 1)[0].strip('"').upper()
            if name not in DRIVER:
                seen[name] += 1
    finally:
        process.terminate()
        process.wait()
        client.close()
        shutil.rmtree(directory, ignore_errors=True)


def executed(url: str) -> int:
    names = {f"cmdstat_{name.lower()}" for name in DRIVER}
    stats = redis_info(url, "commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in names)


def used_memory(url: str) -> int:
    return int(redis_info(url, "memory")["used_memory"])


def measure(url: str, work: Callable[[], None], jobs: int, idle: "Cost") -> Cost:
    """The commands `work` costs per job, less the idle workers' polling over its duration."""
    before = executed(url)
    started = time.monotonic()
    with monitored(url) as seen:
        work()
    took = time.monotonic() - started
    ran = executed(url) - before
    sent = seen()
    return Cost(
        (sum(sent.values()) - idle.sent * took) / jobs,
        (ran - idle.executed * took) / jobs,
        {
            name: (count - idle.by_command.get(name, 0.0) * took) / jobs
            for name, count in sent.most_common()
        },
    )


def idle_rate(url: str) -> Cost:
    """What the idle processes send and Redis executes, per second."""
    idle = measure(url, lambda: time.sleep(IDLE_SECONDS), 1, Cost(0, 0, {}))
    per_second = {name: count / IDLE_SECONDS for name, count in idle.by_command.items()}
    return Cost(idle.sent / IDLE_SECONDS, idle.executed / IDLE_SECONDS, per_second)


async def submit_through_receiver(found: Stack, count: int) -> list[str]:
    """`POST /jobs` `count` times, 10 at a time; the ref of each, once every one was sent."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    limit = asyncio.Semaphore(10)
    async with httpx.AsyncClient(base_url=found.receiver_url, headers=headers, timeout=30) as api:

        async def one(n: int) -> str:
            async with limit:
                answer = await api.post("/jobs", json={"prompt": f"cost {n}", "model": MODEL})
                if answer.status_code != 202:
                    raise RuntimeError(f"POST /jobs answered {answer.status_code}: {answer.text}")
                return str(answer.json()["ref"])

        refs = await asyncio.gather(*(one(n) for n in range(count)))
    # Accepted at once, sent to Apiframe by the worker's dispatcher: until none waits or is
    # being sent (ZCARD, which the counts leave out).
    client = await connect(found.redis_url)
    deadline = time.monotonic() + 120
    try:
        while await client.zcard(keys.waiting(OPERATOR)) or await client.zcard(keys.SENDING):
            if time.monotonic() > deadline:
                raise RuntimeError("the jobs accepted were not all sent to Apiframe")
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    return list(refs)


def with_job_ids(url: str, refs: list[str]) -> list[tuple[str, str]]:
    """Each ref with the job id Apiframe gave it: read once the counting is done."""
    client = redis.Redis.from_url(url)
    try:
        job_ids = [text(client.hget(keys.job(ref), "job_id")) for ref in refs]  # type: ignore[arg-type]
    finally:
        client.close()
    return [(ref, job_id or "") for ref, job_id in zip(refs, job_ids, strict=True)]


async def landable(found: Stack, submitted: list[tuple[str, str]]) -> list[Landable]:
    async with httpx.AsyncClient(
        base_url=found.simulator_url, headers={"X-API-Key": API_KEY}
    ) as api:
        jobs = []
        for ref, job_id in submitted:
            # The simulator finishes each job in a task of its own: ask until it has.
            while True:
                job = (await api.get(f"/v2/jobs/{job_id}")).json()
                if job["status"] == "COMPLETED":
                    break
                await asyncio.sleep(0.01)
            jobs.append(Landable(ref, job_id, tuple(job["result"]["images"])))
        return jobs


async def land(found: Stack, jobs: list[Landable]) -> None:
    redis_client = await connect(found.redis_url)
    try:
        before = await landed_count(redis_client)
        await send_all(found, jobs)
        await until_landed(redis_client, before + len(jobs))
        # The event is published after LANDED: wait until none is owed.
        deadline = time.monotonic() + 60
        while await redis_client.xlen("imagedock:events") < before + len(jobs):
            if time.monotonic() > deadline:
                raise RuntimeError("the events were not all published")
            await asyncio.sleep(0.01)
    finally:
        await redis_client.aclose()


async def arq_jobs(url: str, count: int, tag: str) -> None:
    pool = await connect(url)
    try:
        for n in range(count):
            await pool.enqueue_job("record", _job_id=f"{tag}:{n}", _queue_name=arq_floor.QUEUE)
        deadline = time.monotonic() + 60
        while await pool.hlen(arq_floor.STARTED) < count:  # type: ignore[misc]
            if time.monotonic() > deadline:
                raise RuntimeError("the bare arq worker did not run every job")
            await asyncio.sleep(0.01)
        await pool.delete(arq_floor.STARTED)
    finally:
        await pool.aclose()


def key_sizes(url: str, job: tuple[str, str]) -> list[tuple[str, int]]:
    ref, job_id = job
    client = redis.Redis.from_url(url)
    try:
        names = [keys.job(ref), keys.job_log(ref), keys.objects(ref), keys.job_id(job_id)]
        shown = [(key.replace(ref, "<ref>").replace(job_id, "<job id>"), key) for key in names]
        return [(name, int(client.memory_usage(key) or 0)) for name, key in shown]  # type: ignore[arg-type]
    finally:
        client.close()


EVENTS_MAXLEN = Settings.model_fields["events_stream_maxlen"].default
COMPACT_AFTER_DEFAULT = Settings.model_fields["compact_after"].default
COMPACT_AFTER = 60  # seconds: longer than the memory pass lands its jobs in


def until_compacted(url: str, within: float = 300.0) -> float:
    """Until no finished job waits to be compacted; returns how long that took."""
    client = redis.Redis.from_url(url)
    started = time.monotonic()
    try:
        while client.zcard(keys.COMPACT):
            if time.monotonic() - started > within:
                raise RuntimeError(f"jobs were not compacted within {within:g} s")
            time.sleep(0.2)
        return time.monotonic() - started
    finally:
        client.close()


def capped_streams(url: str) -> int:
    """The bytes the global log and the event stream hold now."""
    client = redis.Redis.from_url(url)
    try:
        sizes: list[int | None] = [client.memory_usage(key) for key in (GLOBAL_LOG, EVENTS)]  # type: ignore[misc]
        return sum(size or 0 for size in sizes)
    finally:
        client.close()


def stream_ceiling(url: str, key: str, most: int) -> tuple[int, int]:
    """The bytes the capped stream `key` holds now, and would at its cap of `most` entries."""
    client = redis.Redis.from_url(url)
    try:
        size, length = int(client.memory_usage(key) or 0), int(client.xlen(key))  # type: ignore[arg-type]
        return size, round(size / max(length, 1) * most)
    finally:
        client.close()


def run_sync(work: Callable[[], Coroutine[Any, Any, object]]) -> Callable[[], None]:
    def run() -> None:
        asyncio.run(work())

    return run


def main() -> None:
    args, result = begin("redis_cost", "Redis cost per job")
    jobs, monitored_jobs = (200, 50) if args.quick else (JOBS, MONITORED)
    compact = str(COMPACT_AFTER)
    with (
        stack(
            "--drop-rate",
            "1",
            poll_after="600",
            compact_after=compact,
            submit_rate="500",  # the simulator sets no limit: jobs are sent as they come
            submit_concurrency="100000",
        ) as found,
        worker(found.worker_env),
    ):
        bare = start([PYTHON, "-m", "benchmarks.arq_floor"], found.worker_env)
        try:
            url = found.redis_url
            # Warm-up: every script loaded into Redis, every code path run once.
            warm = with_job_ids(url, asyncio.run(submit_through_receiver(found, 5)))
            asyncio.run(land(found, asyncio.run(landable(found, warm))))
            asyncio.run(arq_jobs(url, 5, "warm"))
            idle = idle_rate(url)
            say(f"redis cost: idle, {idle.sent:.0f} commands/s sent, {idle.executed:.0f} executed")
            # Commands, over a few hundred jobs with MONITOR on.
            submitted: list[str] = []
            tracked = measure(
                url,
                lambda: submitted.extend(
                    asyncio.run(submit_through_receiver(found, monitored_jobs))
                ),
                monitored_jobs,
                idle,
            )
            ready = asyncio.run(landable(found, with_job_ids(url, submitted)))
            landed = measure(url, run_sync(lambda: land(found, ready)), monitored_jobs, idle)
            floor = measure(
                url, run_sync(lambda: arq_jobs(url, monitored_jobs, "cmd")), monitored_jobs, idle
            )
            # Memory, over more jobs, without MONITOR, once every job so far is compacted.
            until_compacted(url)
            streams_before = capped_streams(url)
            before = used_memory(url)
            more = with_job_ids(url, asyncio.run(submit_through_receiver(found, jobs)))
            after_tracked = used_memory(url)
            asyncio.run(land(found, asyncio.run(landable(found, more))))
            after_landed = used_memory(url)
            landed_keys = key_sizes(url, more[0])
            ran = executed(url)
            waited = until_compacted(url)
            compacting = (executed(url) - ran - idle.executed * waited) / jobs
            after_compacted = used_memory(url)
            streams_grew = capped_streams(url) - streams_before
            compacted_keys = key_sizes(url, more[0])
            asyncio.run(arq_jobs(url, jobs, "mem"))
            after_floor = used_memory(url)
            global_log = stream_ceiling(url, GLOBAL_LOG, GLOBAL_LOG_MAXLEN)
            events = stream_ceiling(url, EVENTS, EVENTS_MAXLEN)
        finally:
            stop(bare)
    tracked_bytes = (after_tracked - before) / jobs
    landed_bytes = (after_landed - after_tracked) / jobs
    # The global log and the event stream are capped: past their caps they grow no more.
    stream_bytes = streams_grew / jobs
    finished_bytes = (after_compacted - before) / jobs - stream_bytes
    floor_bytes = (after_floor - after_compacted) / jobs
    reference = "one arq no-op job, enqueued and run"
    kept = reference + " (kept after it ran)"
    result.rows += [
        Row("per tracked job (`POST /jobs`): commands sent", f"{tracked.sent:.1f}", reference,
            f"{floor.sent:.1f}", f"{tracked.sent / floor.sent:.1f}", "", None),
        Row("per tracked job: commands executed, scripts' included", f"{tracked.executed:.1f}",
            reference, f"{floor.executed:.1f}", f"{tracked.executed / floor.executed:.1f}", "",
            None),
        Row("per landed job (webhook to LANDED and its event): commands sent",
            f"{landed.sent:.1f}", reference, f"{floor.sent:.1f}",
            f"{landed.sent / floor.sent:.1f}", "", None),
        Row("per landed job: commands executed, scripts' included", f"{landed.executed:.1f}",
            reference, f"{floor.executed:.1f}", f"{landed.executed / floor.executed:.1f}", "",
            None),
        Row("memory kept per tracked job", f"{tracked_bytes:,.0f} B", kept,
            f"{floor_bytes:,.0f} B", "", "", None),
        Row("memory added per landed job", f"{landed_bytes:,.0f} B", kept,
            f"{floor_bytes:,.0f} B", "", "", None),
        Row("memory kept per finished job, compacted (besides the two capped streams)",
            f"{finished_bytes:,.0f} B", kept, f"{floor_bytes:,.0f} B", "", "≤ 1,500 B",
            finished_bytes <= 1500),
        Row("its entries in the global log and the event stream, until their caps",
            f"{stream_bytes:,.0f} B", "", "", "", "", None),
        Row("commands executed per compaction", f"{compacting:.1f}", reference,
            f"{floor.executed:.1f}", f"{compacting / floor.executed:.1f}", "", None),
    ]  # fmt: skip
    day = 100_000
    kept_jobs = day * DEFAULT_RETENTION / 86_400
    fixed = global_log[1] + events[1]
    result.notes.append(
        f"100,000 jobs a day, kept for the default {DEFAULT_RETENTION / 86_400:.0f}-day "
        f"retention: {kept_jobs:,.0f} finished jobs x {finished_bytes:,.0f} B = "
        f"{kept_jobs * finished_bytes / 1e9:.1f} GB (before compaction, "
        f"{tracked_bytes + landed_bytes:,.0f} B each: "
        f"{kept_jobs * (tracked_bytes + landed_bytes) / 1e9:.1f} GB); plus two capped streams "
        f"whatever the count: the global log ({GLOBAL_LOG_MAXLEN:,} entries, about "
        f"{global_log[1] / 1e6:.0f} MB full) and the event stream ({EVENTS_MAXLEN:,} events, "
        f"about {events[1] / 1e6:.0f} MB full), {fixed / 1e6:.0f} MB in all; and the jobs of "
        f"the last {COMPACT_AFTER_DEFAULT / 60:.0f} minutes, not yet compacted "
        f"({day * COMPACT_AFTER_DEFAULT / 86_400:,.0f} at that rate, "
        f"{day * COMPACT_AFTER_DEFAULT / 86_400 * (tracked_bytes + landed_bytes) / 1e6:.0f} MB)."
    )
    names = sorted(
        set(tracked.by_command) | set(landed.by_command) | set(floor.by_command),
        key=lambda name: -(tracked.by_command.get(name, 0) + landed.by_command.get(name, 0)),
    )
    rows = [
        (name, *(f"{cost.by_command.get(name, 0.0):.2f}" for cost in (tracked, landed, floor)))
        for name in names
        if max(abs(c.by_command.get(name, 0.0)) for c in (tracked, landed, floor)) >= 0.05
    ]
    result.details.append(
        "Commands clients send, per job, by command (the idle rate taken off):\n\n"
        + table(["command", "tracked job", "landed job", "arq no-op job"], rows)
    )
    sizes = [
        (f"`{key}`", f"{landed:,}", f"{compacted:,}")
        for (key, landed), (_, compacted) in zip(landed_keys, compacted_keys, strict=True)
    ]
    result.details.append(
        "One job's keys (`MEMORY USAGE`), landed and then compacted, besides its place in the "
        "indexes (by time, status and model):\n\n" + table(["key", "landed", "compacted"], sizes)
    )
    result.notes.append(
        f"Commands: {monitored_jobs} jobs with MONITOR on; memory: {jobs} more, without it. The "
        f"idle rate (the landing, polling and bare arq workers polling their queues, measured "
        f"for {IDLE_SECONDS:g} s) was {idle.sent:.0f} commands/s sent and {idle.executed:.0f} "
        "executed, taken off in proportion to each phase's duration. No event endpoints are "
        "configured: an event is an entry in the `imagedock:events` stream. A landed job's log "
        "has its entries (webhook, status changes, downloaded, stored, landed) in its own stream "
        "and in the global one. Jobs are compacted "
        f"{COMPACT_AFTER} s after they end here (`IMAGEDOCK_COMPACT_AFTER`; "
        f"{COMPACT_AFTER_DEFAULT:g} s by default): the memory pass waits for it, and measures a "
        "finished job from before it was made to after it was compacted, less what the "
        "global log and the event stream grew by meanwhile: both are capped, and past their "
        "caps a job adds nothing to them."
    )
    result.finish(args.out)


if __name__ == "__main__":
    main()
