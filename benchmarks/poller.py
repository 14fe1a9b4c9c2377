"""The poller: one pass of `poll_due` with 100,000 tracked jobs of which 100 are due, against
1,000 tracked with 100 due, in alternating rounds.

The two ledgers live in two databases of a private Redis, every record made by `Ledger.create`
and put in the poll set as the submitter does; 100 jobs in each are due now, the rest in an hour.
The due jobs are real jobs of the simulator (run as its own process), stalled in PROCESSING, so
each check is a real `GET /v2/jobs/{id}`. Before every pass the due jobs are made due again.

`python -m benchmarks.poller [--out FILE] [--quick]`
"""

import asyncio
import time
import uuid

import httpx

from benchmarks import ledger_state
from benchmarks.ledger_state import MODEL, Job
from benchmarks.processes import API_KEY, private_redis, stop
from benchmarks.results import Row, begin, median, ratio, say, table
from benchmarks.stack import simulator
from imagedock.clients import open_deps
from simulator.local_s3 import free_port
from worker.deps import Deps
from worker.ledger.keys import POLL_SET
from worker.ledger.ledger import Ledger
from worker.polling import poll_due
from worker.settings import load_settings
from worker.status import Status

DUE = 100
TRACKED = (1_000, 100_000)
ROUNDS = 7


async def simulated_jobs(url: str, count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEY}) as api:
        answers = [
            await api.post("/v2/images/generate", json={"model": MODEL, "prompt": f"poll {n}"})
            for n in range(count)
        ]
    return [answer.json()["jobId"] for answer in answers]


async def track(ledger: Ledger, tracked: int, due_ids: list[str]) -> list[Job]:
    """`tracked` records in the poll set: the ones for `due_ids` due now, the rest in an hour."""
    later = time.time() + 3600

    async def make(n: int) -> Job:
        job_id = due_ids[n] if n < len(due_ids) else str(uuid.uuid4())
        record, _ = await ledger.create(
            prompt=f"poll {n}", model=MODEL, job_id=job_id, status=Status.QUEUED
        )
        await ledger.schedule_poll(record.ref, later)
        return Job(record.ref, job_id)

    jobs = await ledger_state.gathered(tracked, make)
    return jobs[: len(due_ids)]


async def make_due(deps: Deps, due: list[Job]) -> None:
    await deps.redis.zadd(POLL_SET, {job.ref: time.time() - 1 for job in due})


async def one_pass(deps: Deps, due: list[Job]) -> float:
    await make_due(deps, due)
    started = time.perf_counter()
    checked = await poll_due(deps.polling)
    took = time.perf_counter() - started
    if checked != len(due):
        raise RuntimeError(f"the pass checked {checked} jobs, not {len(due)}")
    return took


async def measure(
    redis_url: str, simulator_url: str, rounds: int, tracked: tuple[int, ...]
) -> dict[int, list[float]]:
    due_ids = await simulated_jobs(simulator_url, DUE)
    base = redis_url.rsplit("/", 1)[0]
    apiframe = {"apiframe_url": simulator_url, "apiframe_key": API_KEY}
    async with (
        open_deps(load_settings(redis_url=f"{base}/1", **apiframe)) as small,
        open_deps(load_settings(redis_url=f"{base}/2", **apiframe)) as large,
    ):  # fmt: skip
        ledgers = dict(zip(tracked, (small, large), strict=True))
        due: dict[int, list[Job]] = {}
        for count, deps in ledgers.items():
            started = time.monotonic()
            await deps.redis.flushdb()
            due[count] = await track(deps.ledger, count, due_ids)
            say(f"  {count} tracked jobs made in {time.monotonic() - started:.0f} s")
            await one_pass(deps, due[count])  # warm-up: QUEUED -> PROCESSING, code paths loaded
        passes: dict[int, list[float]] = {count: [] for count in tracked}
        for n in range(rounds):
            for count in tracked if n % 2 == 0 else tuple(reversed(tracked)):
                took = await one_pass(ledgers[count], due[count])
                passes[count].append(took)
                say(f"  {count:7} tracked: one pass {took * 1000:7.1f} ms")
        for deps in ledgers.values():
            await deps.redis.flushdb()
    return passes


def main() -> None:
    args, result = begin("poller", "Poller")
    rounds = 3 if args.quick else ROUNDS
    tracked = (1_000, 20_000) if args.quick else TRACKED
    port = free_port()
    with private_redis() as redis_url:
        sim = simulator(port, "--stall")
        try:
            passes = asyncio.run(measure(redis_url, f"http://127.0.0.1:{port}", rounds, tracked))
        finally:
            stop(sim)  # type: ignore[arg-type]
    small, large = (median(passes[count]) for count in tracked)
    result.rows.append(
        Row(f"one pass, {tracked[1]:,} tracked, {DUE} due", f"{large * 1000:.1f} ms",
            f"one pass, {tracked[0]:,} tracked, {DUE} due", f"{small * 1000:.1f} ms",
            ratio(large, small), "≤ 2", large <= 2 * small)
    )  # fmt: skip
    result.notes.append(
        f"{rounds} passes of each, alternating, medians; each pass checks the {DUE} due jobs with "
        "a real `GET /v2/jobs/{id}` to the simulator (10 at a time, as the poller does), so most "
        "of a pass is those checks; what grows with the tracked count is the claim and the "
        "retention trim, both sorted-set range operations."
    )
    rows = [
        (f"{count:,}", n + 1, f"{took * 1000:.1f}")
        for count, found in passes.items()
        for n, took in enumerate(found)
    ]
    result.details.append("Passes:\n\n" + table(["tracked", "pass", "ms"], rows))
    result.finish(args.out)


if __name__ == "__main__":
    main()
