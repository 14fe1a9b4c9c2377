"""The submit queue: accepting jobs at once, and draining them at exactly Apiframe's pace.

(a) Accept: `POST /jobs` on `imagedock receiver`, driven by wrk in alternating rounds against
the reference, a bare Starlette endpoint that parses the same body and makes one Redis script
call (through imagedock's pool settings), under the same uvicorn options.
(b) Drain: jobs queued, then `imagedock worker` sends them to the simulator (`imagedock
simulator`, its jobs kept running so none finishes) with `IMAGEDOCK_SUBMIT_RATE` set: the rate
achieved over the middle of the drain, from the count of jobs in flight sampled in Redis,
against the rate allowed.

`python -m benchmarks.submit_queue [--out FILE] [--quick]`
"""

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from benchmarks import wrk
from benchmarks.processes import (
    API_KEY,
    API_TOKEN,
    PYTHON,
    answers,
    imagedock_env,
    private_redis,
    receiver,
    redis_pid,
    running,
    served,
    start,
    wait_for,
)
from benchmarks.results import Result, Row, begin, median, ratio, say, table
from simulator.local_s3 import free_port
from worker.ledger import keys


@dataclass(frozen=True)
class Plan:
    seconds: float = 5.0
    rounds: int = 4
    rate: float = 100.0  # submits a second the drain is allowed
    drained: int = 10_000  # jobs queued for the drain, as the accept phase takes them


QUICK = Plan(seconds=2, rounds=2, rate=50.0, drained=400)


def write_jobs(path: Path, count: int) -> Path:
    with path.open("w") as out:
        for n in range(count):
            # webhooks.lua's lines, with no signature: the bearer token goes instead.
            out.write("/jobs\t\t" + json.dumps({"prompt": f"catalogue item {n}"}) + "\n")
    return path


def settings_of(public_url: str, apiframe_url: str) -> dict[str, str]:
    """What the receiver and the worker share: no bucket is reached, none is needed."""
    return {
        "public_url": public_url,
        "apiframe_url": apiframe_url,
        "s3_bucket": "bench",
        "s3_endpoint_url": "http://127.0.0.1:9",
        "s3_region": "us-east-1",
        "s3_addressing_style": "path",
        "s3_access_key_id": "bench-access-key",
        "s3_secret_access_key": "bench-secret-key-0000000000",
    }


def accept(result: Result, plan: Plan, redis_url: str, work: Path) -> None:
    bodies = write_jobs(work / "jobs.tsv", 100_000)
    port, reference_port = free_port(), free_port()
    env = settings_of(f"http://127.0.0.1:{port}", "http://127.0.0.1:9")
    token = {"WRK_TOKEN": API_TOKEN}
    ours = receiver(redis_url, port, log=work / "receiver.log", **env)
    theirs = served("reference-accept", reference_port, 1, imagedock_env(redis_url, **env))
    runs: dict[str, list[wrk.Run]] = {"imagedock": [], "reference": []}
    client = redis.Redis.from_url(redis_url)
    with running(ours, *theirs):
        servers = {
            "imagedock": (f"http://127.0.0.1:{port}", [ours.pid]),
            "reference": (f"http://127.0.0.1:{reference_port}", [t.pid for t in theirs]),
        }
        for round_ in range(plan.rounds):
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for name in order:
                url, pids = servers[name]
                run = wrk.drive(
                    url,
                    bodies,
                    plan.seconds,
                    servers=pids,
                    redis=redis_pid(redis_url),
                    script_env=token,
                )
                say(f"accept round {round_ + 1} {name}: {run.rate:.0f}/s p99 {run.p99_ms:.2f} ms")
                runs[name].append(run)
                client.flushdb()  # each round starts from an empty ledger and queue
    rate = {name: median(r.rate for r in found) for name, found in runs.items()}
    p99 = {name: median(r.p99_ms for r in found) for name, found in runs.items()}
    errors = sum(r.errors for r in runs["imagedock"])
    reference = "bare Starlette + json.loads + one Redis script call (same pool settings)"
    result.rows += [
        Row("(a) POST /jobs: requests/s", f"{rate['imagedock']:.0f}", reference,
            f"{rate['reference']:.0f}", ratio(rate["imagedock"], rate["reference"]), "—", None),
        Row("(a) POST /jobs: p99 latency", f"{p99['imagedock']:.2f} ms", reference,
            f"{p99['reference']:.2f} ms", ratio(p99["imagedock"], p99["reference"]), "—", None),
        Row("(a) POST /jobs: answers other than 202", str(errors), "", "", "", "0",
            errors == 0),
    ]  # fmt: skip
    result.details.append(
        table(
            ["round", "imagedock /s", "p99 ms", "reference /s", "p99 ms", "imagedock CPU ms/req"],
            [
                (
                    n + 1,
                    f"{a.rate:.0f}",
                    f"{a.p99_ms:.2f}",
                    f"{b.rate:.0f}",
                    f"{b.p99_ms:.2f}",
                    f"{a.server_cpu:.3f}",
                )
                for n, (a, b) in enumerate(zip(runs["imagedock"], runs["reference"], strict=True))
            ],
        )
    )
    result.notes.append(
        f"wrk: 1 thread, {wrk.CONNECTIONS} connections, {plan.seconds:g} s a round, "
        f"{plan.rounds} rounds each, alternating; the ledger emptied after every round. The "
        "reference answers the same 202 body after one `SET` through a script, as imagedock's "
        "pool settings make it."
    )


def drain(result: Result, plan: Plan, redis_url: str, work: Path) -> None:
    port, apiframe_port = free_port(), free_port()
    apiframe_url = f"http://127.0.0.1:{apiframe_port}"
    env = settings_of(f"http://127.0.0.1:{port}", apiframe_url)
    simulator = start(
        [
            PYTHON,
            "-m",
            "imagedock",
            "simulator",
            "--port",
            str(apiframe_port),
            "--api-key",
            API_KEY,
            "--stall",
        ],
        log=work / "simulator.log",
    )
    wait_for(lambda: answers(f"{apiframe_url}/v2/models"), "the simulator")
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    ours = receiver(redis_url, port, log=work / "receiver.log", **env)
    with running(simulator, ours):
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=60,
        )
        for first in range(0, plan.drained, 1000):
            batch = [
                {"prompt": f"drained {n}"} for n in range(first, min(first + 1000, plan.drained))
            ]
            answer = api.post("/jobs/batch", json={"jobs": batch})
            assert answer.status_code == 202, answer.text
        worker_env = imagedock_env(
            redis_url,
            **env,
            submit_rate=f"{plan.rate:g}",
            submit_concurrency="100000",
        )
        worker = start([PYTHON, "-m", "imagedock", "worker"], worker_env, log=work / "worker.log")
        with running(worker):
            samples = sample_in_flight(client, plan.drained)
    low, high = plan.drained // 10, plan.drained * 9 // 10
    (t1, c1) = next(s for s in samples if s[1] >= low)
    (t2, c2) = next(s for s in samples if s[1] >= high)
    achieved = (c2 - c1) / (t2 - t1)
    met = achieved / plan.rate >= 0.95
    result.rows.append(
        Row(f"(b) drain of {plan.drained} jobs: submits a second", f"{achieved:.2f}",
            "IMAGEDOCK_SUBMIT_RATE", f"{plan.rate:g}", ratio(achieved, plan.rate), "≥ 0.95", met)
    )  # fmt: skip
    result.notes.append(
        f"(b) {plan.drained} jobs queued through `POST /jobs/batch`, then one `imagedock worker` "
        f"at IMAGEDOCK_SUBMIT_RATE={plan.rate:g} against `imagedock simulator --stall`; the rate "
        "is the jobs in flight counted between 10% and 90% of the drain, sampled every 0.1 s."
    )


def sample_in_flight(client: redis.Redis, total: int) -> list[tuple[float, int]]:
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        count: int = client.zcard(keys.IN_FLIGHT)  # type: ignore[assignment]
        samples.append((time.monotonic(), count))
        if count >= total * 9 // 10:
            return samples
        time.sleep(0.1)
    raise RuntimeError(f"the drain stopped at {samples[-1][1]} of {total} jobs")


def main() -> None:
    args, result = begin("submit_queue", "The submit queue: accept at once, drain at the pace")
    plan = QUICK if args.quick else Plan()
    work = Path(tempfile.mkdtemp(prefix="imagedock-bench-queue-"))
    with private_redis() as redis_url:
        accept(result, plan, redis_url, work)
        drain(result, plan, redis_url, work)
    result.finish(args.out)


if __name__ == "__main__":
    main()
