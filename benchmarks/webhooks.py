"""Webhook ingest: `imagedock receiver` against a bare Starlette endpoint that only parses the same
JSON, both under the same uvicorn options, driven by wrk in alternating rounds.

Cases: (a) a fresh signed `completed` webhook, each request for a different job that is QUEUED
with its job id attached, so each one records the webhook, moves the job and queues its landing;
(b) a duplicate `completed` webhook of a job that has LANDED. The database is restored from a
snapshot before every receiver round, so no body repeats within a round or across rounds. Then
the cost of INFO logging (to /dev/null), the scale-up over 1, 2 and 4 processes, the ceiling of
the load generator against nginx, and a py-spy profile of each server.

`python -m benchmarks.webhooks [--out FILE] [--quick]`
"""

import asyncio
import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from benchmarks import ledger_state, profiles, wrk
from benchmarks.ledger_state import Job
from benchmarks.processes import (
    API_KEY,
    imagedock_env,
    nginx,
    private_redis,
    receiver,
    redis_pid,
    served,
    stop,
)
from benchmarks.results import Result, Row, begin, median, ratio, say, table
from simulator.local_s3 import free_port
from worker.apiframe.signatures import sign
from worker.ledger.ledger import Ledger
from worker.runtime.queue import connect

PATH = "/webhooks/apiframe"
TRACING_OFF = "receiver, tracing off"
TRACING_ON = "receiver, tracing on"
LIGHT = 4  # connections for the light-load case


@dataclass(frozen=True)
class Plan:
    seconds: float = 10.0
    rounds: int = 5
    scale_rounds: int = 3
    fresh_jobs: int = 80_000  # more than the fastest round takes: none repeats
    landed_jobs: int = 2_000
    processes: tuple[int, ...] = (1, 2, 4)


QUICK = Plan(seconds=3, rounds=2, scale_rounds=1, fresh_jobs=15_000, landed_jobs=200)


def completed_body(job_id: str) -> bytes:
    """A `completed` webhook as Apiframe sends it (the simulator's shape)."""
    return json.dumps(
        {
            "event": "completed",
            "jobId": job_id,
            "status": "COMPLETED",
            "progress": 100,
            "result": {"images": [f"https://cdn.apiframe.ai/images/{job_id}-1.png"]},
            "model": ledger_state.MODEL,
            "creditCost": 10,
            "completedAt": "2026-11-24T12:00:00Z",
        }
    ).encode()


def write_bodies(path: Path, jobs: Sequence[Job]) -> Path:
    """One line per webhook for webhooks.lua: path with its ref, signature, body."""
    with path.open("w") as out:
        for job in jobs:
            body = completed_body(job.job_id)
            out.write(f"{PATH}?ref={job.ref}\t{sign(body, API_KEY)}\t{body.decode()}\n")
    return path


@dataclass
class Server:
    name: str
    url: str
    pids: list[int]
    before: Callable[[], None] = lambda: None  # run before each of its rounds


def rounds(
    servers: Sequence[Server],
    bodies: Path,
    plan: Plan,
    count: int,
    redis: int,
    connections: int = wrk.CONNECTIONS,
) -> dict[str, list[wrk.Run]]:
    """`count` rounds of each server in turn, the order reversed every other round."""
    runs: dict[str, list[wrk.Run]] = {server.name: [] for server in servers}
    for n in range(count):
        for server in servers if n % 2 == 0 else list(reversed(servers)):
            server.before()
            run = wrk.drive(
                server.url + PATH,
                bodies,
                plan.seconds,
                servers=server.pids,
                redis=redis,
                connections=connections,
            )
            runs[server.name].append(run)
            say(
                f"  {server.name:24} {run.rate:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
                f"p99 {run.p99_ms:6.2f} ms  errors {run.errors}  wrk cpu {run.wrk_cpu:.2f}"
                + ("  WRAPPED" if run.wrapped else "")
            )
    return runs


def summary_row(runs: list[wrk.Run]) -> tuple[float, float, float]:
    return (
        median(r.rate for r in runs),
        median(r.p50_ms for r in runs),
        median(r.p99_ms for r in runs),
    )


def rounds_table(runs: dict[str, list[wrk.Run]]) -> str:
    rows = []
    for name, found in runs.items():
        for n, run in enumerate(found, start=1):
            rows.append(
                (
                    name,
                    n,
                    f"{run.rate:.0f}",
                    f"{run.p50_ms:.2f}",
                    f"{run.p99_ms:.2f}",
                    run.errors,
                    f"{run.server_cpu:.3f}",
                    f"{run.redis_cpu:.3f}",
                    f"{run.wrk_cpu:.2f}",
                    "yes" if run.wrapped else "no",
                )
            )
    header = ["server", "round", "req/s", "p50 ms", "p99 ms", "errors"]
    header += ["server CPU ms/req", "Redis CPU ms/req", "wrk CPU/wall", "bodies repeated"]
    return table(header, rows)


FLOOR = "the floor: bare Starlette + json.loads + one Redis script call (same pool settings)"
BARE = "bare Starlette + json.loads, same uvicorn options"


def case_rows(
    case: str, ours: list[wrk.Run], floor: list[wrk.Run], bare: list[wrk.Run]
) -> list[Row]:
    """The case's targets, against the durable floor: what any handler that records a webhook
    in Redis pays. The bare endpoint, which records nothing, is shown beside it."""
    rate, p50, p99 = summary_row(ours)
    floor_rate, floor_p50, floor_p99 = summary_row(floor)
    bare_rate = summary_row(bare)[0]
    return [
        Row(f"{case}: requests/s", f"{rate:.0f}", FLOOR, f"{floor_rate:.0f}",
            ratio(rate, floor_rate), "≥ 0.90", rate >= 0.9 * floor_rate),
        Row(f"{case}: p50 latency", f"{p50:.2f} ms", FLOOR, f"{floor_p50:.2f} ms",
            ratio(p50, floor_p50), "", None),
        Row(f"{case}: p99 latency", f"{p99:.2f} ms", FLOOR, f"{floor_p99:.2f} ms",
            ratio(p99, floor_p99), "≤ 10 ms", p99 <= 10.0),
        Row(f"{case}: requests/s, against a bare endpoint", f"{rate:.0f}", BARE,
            f"{bare_rate:.0f}", ratio(rate, bare_rate), "", None),
    ]  # fmt: skip


async def prepare(
    redis_url: str, plan: Plan, directory: Path
) -> tuple[ledger_state.Snapshot, Path, Path]:
    redis = await connect(redis_url)
    try:
        await redis.flushdb()
        ledger = Ledger(redis)
        started = time.monotonic()
        fresh = await ledger_state.queued_jobs(ledger, plan.fresh_jobs)
        landed = await ledger_state.landed_jobs(ledger, plan.landed_jobs)
        taken = await ledger_state.snapshot(redis)
        say(f"  {len(fresh)} queued and {len(landed)} landed jobs made in "
            f"{time.monotonic() - started:.0f} s")  # fmt: skip
    finally:
        await redis.aclose()
    return (
        taken,
        write_bodies(directory / "fresh.txt", fresh),
        write_bodies(directory / "duplicate.txt", landed),
    )


def restorer(redis_url: str, taken: ledger_state.Snapshot) -> Callable[[], None]:
    def restore() -> None:
        async def go() -> None:
            redis = await connect(redis_url)
            try:
                await ledger_state.restore(redis, taken)
            finally:
                await redis.aclose()

        asyncio.run(go())

    return restore


def profile(server: Server, bodies: Path, plan: Plan, title: str) -> str:
    """py-spy on the server's first process while wrk drives it: a round of its own, not
    counted."""
    server.before()
    stacks: list[Counter[str]] = []
    sampler = threading.Thread(
        target=lambda: stacks.append(profiles.record(server.pids[0], plan.seconds - 1))
    )
    sampler.start()
    run = wrk.drive(server.url + PATH, bodies, plan.seconds, servers=server.pids)
    sampler.join()
    return profiles.markdown(title, stacks[0], cpu_ms=run.server_cpu)


def main() -> None:
    args, result = begin("webhooks", "Webhook ingest")
    plan = QUICK if args.quick else Plan()
    directory = Path(tempfile.mkdtemp(prefix="imagedock-bench-webhooks-"))
    with private_redis() as redis_url, ExitStack() as stack:
        say("webhooks: preparing the ledger")
        taken, fresh, duplicate = asyncio.run(prepare(redis_url, plan, directory))
        restore = restorer(redis_url, taken)
        rpid = redis_pid(redis_url)

        ports = [free_port() for _ in range(4)]
        ours = receiver(redis_url, ports[0])
        stack.callback(stop, ours)
        chatty = receiver(redis_url, ports[1], log_level="INFO")  # stdout: /dev/null
        stack.callback(stop, chatty)
        [bare] = served("reference", ports[2], 1, imagedock_env(redis_url))
        stack.callback(stop, bare)
        redis_port = free_port()
        [bare_redis] = served("reference-redis", redis_port, 1, imagedock_env(redis_url))
        stack.callback(stop, bare_redis)
        recv = Server("imagedock receiver", f"http://127.0.0.1:{ports[0]}", [ours.pid], restore)
        info = Server("receiver, INFO logs", f"http://127.0.0.1:{ports[1]}", [chatty.pid], restore)
        ref = Server("reference", f"http://127.0.0.1:{ports[2]}", [bare.pid])
        ref_redis = Server(
            "reference + one Redis call", f"http://127.0.0.1:{redis_port}", [bare_redis.pid]
        )

        say("webhooks: warming up")
        warm = Plan(seconds=2)
        rounds([recv, info, ref], duplicate, warm, 1, rpid)

        say("webhooks: the load generator's ceiling, against nginx")
        with nginx(ports[3]) as web:
            ceiling = wrk.drive(
                f"http://127.0.0.1:{ports[3]}{PATH}", fresh, plan.seconds, servers=[web.pid]
            )

        say("webhooks: (a) fresh signed completed webhooks")
        fresh_runs = rounds([recv, ref, ref_redis], fresh, plan, plan.rounds, rpid)
        say("webhooks: (b) duplicates of landed jobs")
        restore()
        dup_runs = rounds([recv, ref, ref_redis], duplicate, plan, plan.rounds, rpid)
        say(f"webhooks: (a) at light load, {LIGHT} connections")
        light_runs = rounds([recv, ref], fresh, plan, plan.scale_rounds, rpid, connections=LIGHT)
        say("webhooks: INFO logging to /dev/null against WARNING")
        log_runs = rounds([recv, info], fresh, plan, plan.scale_rounds, rpid)

        say("webhooks: tracing on (OTLP to nginx, every span kept) against off")
        trace_runs = tracing_rounds(redis_url, fresh, plan, rpid, restore)

        say("webhooks: profiles")
        receiver_profile = profile(recv, fresh, plan, "imagedock receiver, case (a)")
        reference_profile = profile(ref, fresh, plan, "reference")
        for process in (ours, chatty, bare, bare_redis):
            stop(process)

        scale: dict[int, dict[str, list[wrk.Run]]] = {}
        for count in plan.processes:
            say(f"webhooks: scale-up, {count} process(es) each")
            env = imagedock_env(redis_url)
            port, ref_port = free_port(), free_port()
            mine = served("receiver", port, count, env)
            theirs = served("reference", ref_port, count, env)
            try:
                pair = [
                    Server(
                        f"receiver x{count}",
                        f"http://127.0.0.1:{port}",
                        [p.pid for p in mine],
                        restore,
                    ),
                    Server(
                        f"reference x{count}",
                        f"http://127.0.0.1:{ref_port}",
                        [p.pid for p in theirs],
                    ),
                ]
                scale[count] = rounds(pair, fresh, plan, plan.scale_rounds, rpid)
            finally:
                for process in mine + theirs:
                    stop(process)

    shutil.rmtree(directory, ignore_errors=True)
    report(result, plan, fresh_runs, dup_runs, log_runs, scale, ceiling)
    report_light(result, light_runs)
    report_tracing(result, trace_runs)
    report_pieces(result, pieces())
    result.details.append(receiver_profile)
    result.details.append(reference_profile)
    result.finish(args.out)


def tracing_rounds(
    redis_url: str, bodies: Path, plan: Plan, rpid: int, restore: Callable[[], None]
) -> dict[str, list[wrk.Run]]:
    """The receiver with tracing off and on (`python -m benchmarks.serve receiver`, one
    process each), every span exported over OTLP/HTTP to nginx, which answers 200."""
    sink, plain, traced = free_port(), free_port(), free_port()
    with nginx(sink):
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink}"}
        [off] = served("receiver", plain, 1, imagedock_env(redis_url))
        [on] = served("receiver", traced, 1, {**imagedock_env(redis_url), **otel})
        try:
            pair = [
                Server(TRACING_OFF, f"http://127.0.0.1:{plain}", [off.pid], restore),
                Server(TRACING_ON, f"http://127.0.0.1:{traced}", [on.pid], restore),
            ]
            return rounds(pair, bodies, plan, plan.scale_rounds, rpid)
        finally:
            stop(off)
            stop(on)


def report_tracing(result: Result, runs: dict[str, list[wrk.Run]]) -> None:
    rate, _, p99 = summary_row(runs[TRACING_ON])
    off_rate, _, off_p99 = summary_row(runs[TRACING_OFF])
    result.rows += [
        Row("(a) tracing on: requests/s", f"{rate:.0f}", TRACING_OFF, f"{off_rate:.0f}",
            ratio(rate, off_rate), "", None),
        Row("(a) tracing on: p99 latency", f"{p99:.2f} ms", TRACING_OFF, f"{off_p99:.2f} ms",
            ratio(p99, off_p99), "", None),
    ]  # fmt: skip
    result.notes.append(
        "Tracing on: the receiver with `OTEL_EXPORTER_OTLP_ENDPOINT` set, every request a "
        "server span (Starlette's instrumentation), its Redis calls spans (redis-py's), the "
        "webhook's intake span in its job's trace, all kept (the SDK's default sampler) and "
        "sent in batches over OTLP/HTTP to nginx standing in for a collector. Sample with "
        "`OTEL_TRACES_SAMPLER=parentbased_traceidratio` to pay less."
    )
    result.details.append("Rounds, tracing:\n\n" + rounds_table(runs))


def pieces(repeat: int = 20_000) -> list[tuple[str, float]]:
    """What the receiver does to a fresh signed webhook beyond the floor's parse and one call,
    each piece timed alone in this process: microseconds a webhook."""
    import io

    from redis.asyncio.connection import Connection
    from starlette.responses import Response

    from receiver.schemas import WebhookAnswer
    from receiver.webhooks import rendered
    from worker.apiframe import WebhookEvent
    from worker.apiframe.results import dumps
    from worker.apiframe.signatures import verify_signature
    from worker.ledger.ledger import move_fields, script_config
    from worker.ledger.log import echo
    from worker.runtime.queue import landing_job
    from worker.status import Status
    from worker.structured_logging import configure_logging

    configure_logging("WARNING", stream=io.StringIO())
    job_id = "0b5e9d1c-7a9d-4d1e-9d0a-2b6f8f0f1a11"
    body = completed_body(job_id)
    signature = sign(body, API_KEY)
    event = WebhookEvent.model_validate_json(body)
    fields = {"assets": dumps(event.assets), "via": "webhook", "credit_cost": 10}
    args = [script_config(30 * 86_400), "0" * 32, job_id, "COMPLETED", "100",
            move_fields(Status.COMPLETED, dict(fields)), time.time(), time.time(), "A",
            "imagedock:histogram:webhook_enqueue_seconds", "0.005", 0.001,
            *landing_job(job_id).script_args()]  # fmt: skip
    packer = Connection()

    def two_lines() -> None:
        echo("webhook.accepted", "0" * 32, job_id, "receiver", {"status": "COMPLETED"})
        echo("status.changed", "0" * 32, job_id, "receiver", {"to": "COMPLETED"})

    work: dict[str, Callable[[], object]] = {
        "the signature checked (HMAC-SHA256, both derivations)": lambda: verify_signature(
            body, signature, [API_KEY]
        ),
        "the body validated into its model": lambda: WebhookEvent.model_validate_json(body),
        "its files listed, as the record keeps them": lambda: dumps(event.assets),
        "the move's fields": lambda: move_fields(Status.COMPLETED, dict(fields)),
        "the landing's arq job": lambda: landing_job(job_id).script_args(),
        "the intake script's call packed (redis-py, in Python)": lambda: packer.pack_command(
            "EVALSHA", "0" * 40, 0, *args
        ),
        "two log lines (at WARNING: not written)": two_lines,
        "the answer": lambda: Response(
            rendered(WebhookAnswer(accepted=True, queued=True)), 200, media_type="application/json"
        ),
    }
    timed = []
    for name, piece in work.items():
        piece()
        started = time.perf_counter()
        for _ in range(repeat):
            piece()
        timed.append((name, (time.perf_counter() - started) / repeat * 1e6))
    return timed


def report_pieces(result: Result, timed: list[tuple[str, float]]) -> None:
    rows = [(name, f"{micros:.1f}") for name, micros in timed]
    rows.append(("in all", f"{sum(micros for _, micros in timed):.1f}"))
    result.details.append(
        "What the receiver does to a fresh webhook beyond the floor's parse and one Redis "
        "call, each piece timed alone (µs a webhook, this process, one core):\n\n"
        + table(["piece", "µs"], rows)
    )


def report_light(result: Result, runs: dict[str, list[wrk.Run]]) -> None:
    rate, p50, p99 = summary_row(runs["imagedock receiver"])
    ref_rate, ref_p50, ref_p99 = summary_row(runs["reference"])
    bare = f"the reference at {LIGHT} connections"
    result.rows += [
        Row(f"(a) at {LIGHT} connections: requests/s", f"{rate:.0f}", bare, f"{ref_rate:.0f}",
            ratio(rate, ref_rate), "", None),
        Row(f"(a) at {LIGHT} connections: p99 latency", f"{p99:.2f} ms", bare, f"{ref_p99:.2f} ms",
            ratio(p99, ref_p99), "", None),
    ]  # fmt: skip
    result.details.append(f"Rounds, (a) at {LIGHT} connections:\n\n" + rounds_table(runs))
    del p50, ref_p50


def report(
    result: Result,
    plan: Plan,
    fresh_runs: dict[str, list[wrk.Run]],
    dup_runs: dict[str, list[wrk.Run]],
    log_runs: dict[str, list[wrk.Run]],
    scale: dict[int, dict[str, list[wrk.Run]]],
    ceiling: wrk.Run,
) -> None:
    recv, ref = "imagedock receiver", "reference"
    floor = "reference + one Redis call"
    for case, runs in (
        ("(a) fresh completed webhook", fresh_runs),
        ("(b) duplicate of a landed job", dup_runs),
    ):
        result.rows += case_rows(case, runs[recv], runs[floor], runs[ref])
    warn_rate = median(r.rate for r in log_runs[recv])
    info_rate = median(r.rate for r in log_runs["receiver, INFO logs"])
    result.rows.append(
        Row("(a) with INFO logs to /dev/null: requests/s", f"{info_rate:.0f}",
            "the same receiver at WARNING", f"{warn_rate:.0f}", ratio(info_rate, warn_rate),
            "", None)
    )  # fmt: skip
    for count, runs in scale.items():
        rate = median(r.rate for r in runs[f"receiver x{count}"])
        ref_rate = median(r.rate for r in runs[f"reference x{count}"])
        result.rows.append(
            Row(f"(a) {count} receiver processes: requests/s", f"{rate:.0f}",
                f"reference, {count} processes", f"{ref_rate:.0f}", ratio(rate, ref_rate), "", None)
        )  # fmt: skip
    wrk_busy = max(r.wrk_cpu for runs in fresh_runs.values() for r in runs)
    fastest = max(r.rate for runs in fresh_runs.values() for r in runs)
    result.rows.append(
        Row("load generator: wrk's requests/s against nginx", f"{ceiling.rate:.0f}",
            "the fastest server measured here", f"{fastest:.0f}", ratio(ceiling.rate, fastest),
            "≥ 3 (wrk not the limit)", ceiling.rate >= 3 * fastest)
    )  # fmt: skip
    result.notes.append(
        f"wrk 4.1 (Debian), {wrk.THREADS} thread, {wrk.CONNECTIONS} connections, "
        f"{plan.seconds:g} s a round; {plan.rounds} rounds of each server for (a) and (b), "
        f"{plan.scale_rounds} for logging and scale-up, alternating, the order reversed every "
        "other round; figures are medians over rounds. Latency is wrk's, from request written to "
        "answer read, at full load (a closed loop: wrk keeps 50 requests in flight)."
    )
    result.notes.append(
        "The receiver runs with `IMAGEDOCK_LOG_LEVEL=WARNING` and its stdout to /dev/null: at the "
        "default INFO it writes two JSON lines per webhook (`webhook.accepted`, `status.changed`); "
        "the INFO row shows what those lines cost when written to /dev/null."
    )
    result.notes.append(
        f"The load generator is not the limit: against nginx (one worker, answering the same "
        f"requests with a small JSON body) wrk reached {ceiling.rate:.0f} requests/s using "
        f"{ceiling.wrk_cpu:.2f} of a core; against imagedock and the reference it used at most "
        f"{wrk_busy:.2f} of a core."
    )
    result.notes.append(
        "The scale-up rows run `python -m benchmarks.serve receiver`: the same app, settings "
        "and logging set-up as `imagedock receiver`, N processes on one port through "
        "SO_REUSEPORT (the kernel spreads connections among them), so the reference can be "
        "served exactly the same way; `imagedock receiver --workers N` runs the same app under "
        "uvicorn's own supervisor. The machine has 2 cores, shared with Redis and wrk."
    )
    result.details.append("Rounds, (a) fresh webhooks:\n\n" + rounds_table(fresh_runs))
    result.details.append("Rounds, (b) duplicates:\n\n" + rounds_table(dup_runs))
    result.details.append("Rounds, logging:\n\n" + rounds_table(log_runs))
    for count, runs in scale.items():
        result.details.append(f"Rounds, {count} process(es):\n\n" + rounds_table(runs))
    result.details.append("Ceiling:\n\n" + rounds_table({"nginx (wrk's ceiling)": [ceiling]}))


if __name__ == "__main__":
    main()
