"""More than one of each process, as a deployment runs them: two receivers and three workers on
one Redis and one S3 server, webhooks spread over both receivers and duplicated across them,
and every worker restarted one at a time under load. Every job lands once, every event has one
id, and the poller runs once per tick whichever worker holds it."""

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from simulator.local_s3 import free_port
from tests.support.processes import env_of, running
from tests.support.stack import API_TOKEN, EVENT_SECRET, Stack
from tests.support.waiting import wait_for
from worker.runtime.heartbeat import last_beats

JOBS = 12
WORKER = [sys.executable, "-m", "imagedock", "worker"]


def process_env(stack: Stack, **changes: str) -> dict[str, str]:
    return env_of(
        stack,
        IMAGEDOCK_DOWNLOAD_HOSTS="127.0.0.1",
        IMAGEDOCK_EVENT_URLS=stack.events.url,
        IMAGEDOCK_EVENT_SECRET=EVENT_SECRET,
        IMAGEDOCK_API_TOKEN=API_TOKEN,
        IMAGEDOCK_POLL_AFTER="1",
        IMAGEDOCK_LANDING_BACKOFF="0.2",
        IMAGEDOCK_STOP_WAIT="1",
        **{"IMAGEDOCK_LOG_LEVEL": "INFO", **changes},
    )


@contextmanager
def receivers(stack: Stack, count: int) -> Iterator[list[str]]:
    """`count` receiver processes, each with its own port and public URL."""
    with ExitStack() as stack_of:
        urls = []
        for _ in range(count):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            command = [sys.executable, "-m", "imagedock", "receiver", "--port", str(port)]
            process = stack_of.enter_context(
                running(command, process_env(stack, IMAGEDOCK_PUBLIC_URL=url))
            )
            wait_for(lambda p=process, u=url: answers(p, u), "a receiver")
            urls.append(url)
        yield urls


def answers(process: subprocess.Popen[str], url: str) -> bool:
    assert process.poll() is None, process.stdout and process.stdout.read()
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.TransportError:
        return False


class Workers:
    """Worker processes whose output goes to files (a pipe nobody reads would fill and stall
    them), to be stopped and replaced one at a time."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self) -> None:
        log = self.folder / f"worker-{len(self.logs)}.log"
        with log.open("w") as out:
            process = subprocess.Popen(WORKER, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        self.logs[process.pid] = log

    def output(self, process: subprocess.Popen[bytes]) -> str:
        return self.logs[process.pid].read_text()

    def outputs(self) -> list[str]:
        return [log.read_text() for log in self.logs.values()]

    async def ready(self, redis: Redis) -> None:
        """Until every worker process has sent its first heartbeat (its signals are handled)."""
        for _ in range(600):
            beats = await last_beats(redis)
            if all(f"{socket.gethostname()}:{p.pid}" in beats for p in self.processes):
                return
            for process in self.processes:
                assert process.poll() is None, self.output(process)[-3000:]
            await asyncio.sleep(0.05)
        raise AssertionError("a worker never sent a heartbeat")

    async def stop(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 60)
        assert process.returncode == 0, self.output(process)[-3000:]
        self.processes.remove(process)

    async def stop_all(self) -> None:
        for process in list(self.processes):
            await self.stop(process)


@asynccontextmanager
async def workers(env: dict[str, str], count: int, folder: Path) -> AsyncIterator[Workers]:
    pool = Workers(env, folder)
    for _ in range(count):
        pool.start()
    try:
        yield pool
    finally:
        for process in pool.processes:
            process.kill()
            process.wait()


async def submit_across(urls: list[str], count: int) -> list[str]:
    """`count` jobs, submitted to each receiver in turn; their refs."""
    job_ids = []
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_TOKEN}"}) as api:
        for n in range(count):
            answer = await api.post(f"{urls[n % len(urls)]}/jobs", json={"prompt": f"job {n}"})
            assert answer.status_code == 202, answer.text
            job_ids.append(answer.json()["ref"])
    return job_ids


async def cross_post(stack: Stack, urls: list[str]) -> int:
    """Every webhook Apiframe sent, sent again to each receiver."""
    sent = 0
    async with httpx.AsyncClient() as client:
        for delivery in list(stack.sim.deliveries):
            path = delivery.url[delivery.url.index("/webhooks/") :]
            for url in urls:
                again = await client.post(
                    url + path,
                    content=delivery.body,
                    headers={k: v for k, v in delivery.headers.items() if k.lower() != "host"},
                )
                assert again.status_code in (200, 202), again.text
                sent += 1
    return sent


async def all_landed(stack: Stack, refs: list[str], deadline: float = 120) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    for _ in range(int(deadline / 0.2)):
        jobs = [await stack.job(ref) for ref in refs]
        delivered = {event["data"]["ref"] for event in stack.delivered("job.landed")}
        if all(job["status"] == "LANDED" for job in jobs) and delivered >= set(refs):
            return jobs
        await asyncio.sleep(0.2)
    raise AssertionError(f"not all landed: {Counter(job['status'] for job in jobs)}")


async def assert_each_landed_once(stack: Stack, refs: list[str]) -> None:
    jobs = await all_landed(stack, refs)
    for job in jobs:
        assert len(job["objects"]) == 1
        assert stack.keys(job["jobId"]) == sorted(
            [job["objects"][0]["key"], f"{stack.settings.s3_prefix}{job['jobId']}/manifest.json"]
        )
        assert (await stack.log_events(job["jobId"])).count("job.landed") == 1
    events = stack.delivered("job.landed")
    ids = [event["id"] for event in events]
    assert len(ids) == len(set(ids)) == len(refs)


def cron_runs(outputs: list[str]) -> Counter[str]:
    """How often each poll tick ran, across every worker's output."""
    runs: Counter[str] = Counter()
    for output in outputs:
        for line in output.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == "poll.pass":
                    runs[entry["tick"]] += 1
    return runs


async def test_two_receivers_and_three_workers_land_every_job_once(
    stack: Stack, tmp_path: Path
) -> None:
    """Jobs submitted through two receivers, their webhooks duplicated and also sent to the
    other receiver, landed by three workers: each job once, each event once, each poll tick
    run by one worker."""
    stack.sim.config.duplicates = 2
    with receivers(stack, 2) as urls:
        # At DEBUG every poll pass is logged, those that found nothing due too.
        async with workers(process_env(stack, IMAGEDOCK_LOG_LEVEL="DEBUG"), 3, tmp_path) as pool:
            job_ids = await submit_across(urls, JOBS)
            await stack.all_sent()
            await stack.sim.settle()
            assert await cross_post(stack, urls) >= JOBS * 2
            await assert_each_landed_once(stack, job_ids)
            await pool.stop_all()
    runs = cron_runs(pool.outputs())
    assert runs, "no poll pass seen in the workers' logs"
    assert max(runs.values()) == 1, runs.most_common(3)


async def test_a_rolling_restart_of_every_worker_under_load_loses_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    """While slow landings run, each of two workers is stopped and replaced in turn: every job
    lands once and every event is delivered once."""
    stack.sim.config.image_bytes = 1024 * 1024
    stack.sim.config.cdn_chunk_delay = 0.02
    with receivers(stack, 1) as urls:
        async with workers(process_env(stack), 2, tmp_path) as pool:
            await pool.ready(stack.redis)
            job_ids = await submit_across(urls, JOBS)
            for _ in range(2):
                await asyncio.sleep(0.5)  # let the workers take landings before one goes
                await pool.stop(pool.processes[0])
                pool.start()
                await pool.ready(stack.redis)
            await assert_each_landed_once(stack, job_ids)
            await pool.stop_all()
