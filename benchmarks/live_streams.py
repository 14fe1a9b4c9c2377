"""Webhooks while the live log is watched: signed webhooks at a steady pace, to a receiver with no
live-log stream open and to one with `IMAGEDOCK_STREAMS_MAX` (300) streams open, every one of them
sent each log entry; against the durable floor (a bare Starlette endpoint that parses the JSON and
makes one Redis script call) at the same pace. Meanwhile `/healthz` is asked twice a second and
Redis's client count is read, so the figures show that probes answer and that connections stay
within the receiver's `IMAGEDOCK_REDIS_MAX_CONNECTIONS`.

`python -m benchmarks.live_streams [--out FILE] [--quick]`
"""

import asyncio
import json
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks import ledger_state, wrk
from benchmarks.processes import (
    PYTHON,
    cpu_seconds,
    imagedock_env,
    private_redis,
    receiver,
    redis_info,
    redis_pid,
    served,
    start,
    stop,
    wait_for,
)
from benchmarks.results import Result, Row, begin, median, ratio, say, table
from benchmarks.webhooks import PATH, restorer, write_bodies
from simulator.local_s3 import free_port
from worker.ledger.ledger import Ledger
from worker.runtime.queue import connect

STREAMS = 300
CONNECTIONS = 4  # wrk's connections, each pausing DELAY_MS before each request
DELAY_MS = 20
POOL = 64  # IMAGEDOCK_REDIS_MAX_CONNECTIONS, the default
TARGET_MS = 20.0


@dataclass(frozen=True)
class Plan:
    seconds: float = 10.0
    rounds: int = 5
    jobs: int = 20_000  # more than a round sends at this pace: no body repeats


QUICK = Plan(seconds=3, rounds=2, jobs=3_000)


@dataclass
class Watch:
    """What was seen beside one round: `/healthz` answers and the most Redis clients."""

    health: Counter[str] = field(default_factory=Counter)
    most_clients: int = 0


@contextmanager
def watching(receiver_url: str, redis_url: str) -> Iterator[Watch]:
    seen = Watch()
    done = threading.Event()

    def look() -> None:
        with httpx.Client(timeout=5) as client:
            while not done.wait(0.5):
                try:
                    seen.health[str(client.get(f"{receiver_url}/healthz").status_code)] += 1
                except httpx.HTTPError as error:
                    seen.health[type(error).__name__] += 1
                clients = int(redis_info(redis_url, "clients")["connected_clients"])
                seen.most_clients = max(seen.most_clients, clients)

    looker = threading.Thread(target=look)
    looker.start()
    try:
        yield seen
    finally:
        done.set()
        looker.join()


@dataclass
class Server:
    name: str
    url: str
    pid: int
    before: Callable[[], None] = lambda: None
    runs: list[wrk.Run] = field(default_factory=list)
    watches: list[Watch] = field(default_factory=list)


def readers(
    port: int, count: int, env: dict[str, str], directory: Path
) -> tuple["subprocess.Popen[bytes]", Path]:
    """`count` live-log streams held open on the receiver at `port`, once all are open."""
    ready, out = directory / f"ready-{port}", directory / f"tally-{port}.json"
    process = start([PYTHON, "-m", "benchmarks.log_readers", str(port), str(count), str(ready),
                     str(out)], env)  # fmt: skip
    wait_for(ready.exists, f"{count} live-log streams", timeout=120)
    return process, out


def main() -> None:
    args, result = begin("live_streams", "Webhooks with 300 live-log streams open")
    plan = QUICK if args.quick else Plan()
    directory = Path(tempfile.mkdtemp(prefix="imagedock-bench-streams-"))
    with private_redis() as redis_url, ExitStack() as stack:
        say("live_streams: preparing the ledger")
        taken, bodies = asyncio.run(prepare(redis_url, plan.jobs, directory))
        restore = restorer(redis_url, taken)
        rpid = redis_pid(redis_url)
        env = imagedock_env(redis_url)
        quiet_port, watched_port, floor_port = free_port(), free_port(), free_port()
        quiet = receiver(redis_url, quiet_port)
        stack.callback(stop, quiet)
        watched = receiver(redis_url, watched_port)
        stack.callback(stop, watched)
        [floor] = served("reference-redis", floor_port, 1, env)
        stack.callback(stop, floor)
        say(f"live_streams: opening {STREAMS} streams")
        reading, tally_file = readers(watched_port, STREAMS, env, directory)
        opened = time.monotonic()
        servers = [
            Server("receiver, no stream open", f"http://127.0.0.1:{quiet_port}", quiet.pid,
                   restore),
            Server(f"receiver, {STREAMS} streams open", f"http://127.0.0.1:{watched_port}",
                   watched.pid, restore),
            Server("durable floor", f"http://127.0.0.1:{floor_port}", floor.pid),
        ]  # fmt: skip
        for n in range(plan.rounds):
            for server in servers if n % 2 == 0 else list(reversed(servers)):
                server.before()
                with watching(server.url, redis_url) as seen:
                    run = wrk.drive(
                        server.url + PATH,
                        bodies,
                        plan.seconds,
                        servers=[server.pid],
                        redis=rpid,
                        connections=CONNECTIONS,
                        delay_ms=DELAY_MS,
                    )
                server.runs.append(run)
                server.watches.append(seen)
                say(f"  {server.name:28} {run.rate:6.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
                    f"p99 {run.p99_ms:6.2f} ms  errors {run.errors}  "
                    f"healthz {dict(seen.health)}  redis clients {seen.most_clients}")  # fmt: skip
        cpu = cpu_seconds(reading.pid) / (time.monotonic() - opened)
        stop(reading)
        tally = {**json.loads(tally_file.read_text()), "cpu": cpu}
    report(result, plan, servers, tally)
    result.finish(args.out)


async def prepare(redis_url: str, jobs: int, directory: Path) -> tuple[ledger_state.Snapshot, Path]:
    redis = await connect(redis_url)
    try:
        await redis.flushdb()
        queued = await ledger_state.queued_jobs(Ledger(redis), jobs)
        return await ledger_state.snapshot(redis), write_bodies(directory / "fresh.txt", queued)
    finally:
        await redis.aclose()


def report(result: Result, plan: Plan, servers: list[Server], tally: dict[str, float]) -> None:
    quiet, watched, floor = servers
    floor_p50 = median(r.p50_ms for r in floor.runs)
    for server in (quiet, watched):
        p50 = median(r.p50_ms for r in server.runs)
        target = f"< {TARGET_MS:g} ms" if server is watched else ""
        result.rows.append(
            Row(f"{server.name}: webhook p50 latency", f"{p50:.2f} ms",
                "durable floor at the same pace", f"{floor_p50:.2f} ms", ratio(p50, floor_p50),
                target, p50 < TARGET_MS if server is watched else None)
        )  # fmt: skip
    health = sum((w.health for w in watched.watches), Counter[str]())
    healthy = health["200"] == sum(health.values())
    result.rows.append(
        Row(f"{watched.name}: `/healthz` answered 200", f"{health['200']} of "
            f"{sum(health.values())}", "", "", "", "all", healthy)
    )  # fmt: skip
    clients = max(w.most_clients for w in watched.watches)
    result.rows.append(
        Row(f"{watched.name}: most Redis clients (every process)", str(clients),
            "the two receivers' pools, the floor's and this benchmark's", "",
            "", f"≤ 2 x {POOL} + 8", clients <= 2 * POOL + 8)
    )  # fmt: skip
    result.notes.append(
        f"wrk 4.1 (Debian), {CONNECTIONS} connections, each waiting {DELAY_MS} ms before each "
        f"request (a steady pace rather than a closed loop at full load), {plan.seconds:g} s a "
        f"round, {plan.rounds} rounds of each server, alternating, the order reversed every other "
        "round; figures are medians over rounds. Each webhook is a fresh signed `completed` "
        "webhook of a different queued job, as in the webhook ingest benchmark, so it writes "
        "log entries that every open stream is sent."
    )
    result.notes.append(
        f"The streams are held by `benchmarks/log_readers.py`, one process reading plain sockets "
        f"and discarding what comes: over the run it read {tally['bytes'] / 1e6:.1f} MB, "
        f"using {tally['cpu']:.2f} of a core, {tally['ended']} streams were ended by the "
        "receiver (a stream that falls 1,000 entries behind is dropped, and opened again here) "
        f"and {tally['refused']} openings refused. The durable floor is `benchmarks.serve "
        "reference-redis` (see the webhook ingest benchmark): what any handler that calls Redis "
        "once pays."
    )
    rows = []
    for server in servers:
        for n, (run, seen) in enumerate(zip(server.runs, server.watches, strict=True), start=1):
            rows.append((server.name, n, f"{run.rate:.0f}", f"{run.p50_ms:.2f}",
                         f"{run.p99_ms:.2f}", run.errors, f"{run.server_cpu:.3f}",
                         dict(seen.health), seen.most_clients))  # fmt: skip
    header = ["server", "round", "req/s", "p50 ms", "p99 ms", "errors", "server CPU ms/req"]
    result.details.append("Rounds:\n\n" + table([*header, "/healthz", "Redis clients"], rows))


if __name__ == "__main__":
    main()
