"""Driving a server with wrk (Debian's package): one run's throughput and latency, and what wrk
itself spent in CPU time, so a figure can show that the load generator was not the limit."""

import json
import os
import resource
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.processes import cpu_seconds

SCRIPT = Path(__file__).with_name("webhooks.lua")
THREADS = 1
CONNECTIONS = 50


@dataclass(frozen=True)
class Run:
    """One wrk run against one server."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors
    wrapped: bool  # the run sent more requests than there were bodies, so some repeated
    wrk_cpu: float  # wrk's CPU seconds over the run's wall seconds (1.0 = one core)
    server_cpu: float  # the servers' CPU seconds per request, in ms
    redis_cpu: float  # Redis's CPU seconds per request, in ms (0 without Redis)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def drive(
    url: str,
    bodies: Path,
    seconds: float,
    *,
    servers: Sequence[int] = (),
    redis: int | None = None,
    connections: int = CONNECTIONS,
    delay_ms: int | None = None,
    script_env: Mapping[str, str] | None = None,
) -> Run:
    """POST the lines of `bodies` (see webhooks.lua) at `url` for `seconds`, with `connections`
    connections on `THREADS` thread, each waiting `delay_ms` before each request if given;
    `servers` and `redis` are pids whose CPU time is counted; `script_env` sets the script's
    variables (`WRK_TOKEN`)."""
    args = ["wrk", "-t", str(THREADS), "-c", str(connections), "-d", f"{seconds:g}s"]
    args += ["--timeout", "5s", "-s", str(SCRIPT), url, "--", str(bodies)]
    before = [cpu_seconds(pid) for pid in servers]
    redis_before = cpu_seconds(redis) if redis else 0.0
    # wrk is the only child this process waits for meanwhile: the growth of the children's
    # usage is wrk's own CPU time.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    env = {**os.environ, **(script_env or {})}
    if delay_ms is not None:
        env["WRK_DELAY_MS"] = str(delay_ms)
    done = subprocess.run(args, capture_output=True, check=False, env=env)  # noqa: S603
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = [cpu_seconds(pid) - b for pid, b in zip(servers, before, strict=True)]
    redis_spent = cpu_seconds(redis) - redis_before if redis else 0.0
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr.decode()}")
    line = next(line for line in done.stdout.decode().splitlines() if line.startswith("WRK_JSON "))
    figures = json.loads(line.removeprefix("WRK_JSON "))
    wrk_spent = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    requests = int(figures["requests"])
    return Run(
        requests=requests,
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        errors=int(figures["status_errors"]) + int(figures["socket_errors"]),
        wrapped=int(figures["sent"]) > int(figures["bodies"]),
        wrk_cpu=wrk_spent / wall,
        server_cpu=1000 * sum(spent) / max(1, requests),
        redis_cpu=1000 * redis_spent / max(1, requests),
    )
