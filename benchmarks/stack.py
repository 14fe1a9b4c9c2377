"""imagedock as an operator runs it, on loopback: a private Redis, SeaweedFS, the Apiframe
simulator, `imagedock receiver` and `imagedock worker`, each its own process. Jobs are submitted
to the simulator directly (it sends no webhooks: no webhook URL is given) and recorded in the
ledger as QUEUED with their job ids; the benchmark then sends each job's signed `completed`
webhook itself, at the moment it chooses, and watches the ledger."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from arq.connections import ArqRedis
from arq.constants import health_check_key_suffix

from benchmarks.ledger_state import MODEL, Job, gathered
from benchmarks.processes import (
    API_KEY,
    PYTHON,
    answers,
    imagedock_env,
    private_redis,
    receiver,
    start,
    stop,
    wait_for,
)
from simulator.local_s3 import LocalS3, free_port, local_s3
from worker.apiframe.signatures import sign
from worker.ledger.keys import BY_STATUS, LANDING_QUEUE
from worker.ledger.ledger import Ledger
from worker.runtime.queue import connect
from worker.status import Status

BUCKET = "bench"


@dataclass(frozen=True)
class Landable(Job):
    urls: tuple[str, ...]  # the simulator's result URLs for the job


@dataclass
class Stack:
    redis_url: str
    s3: LocalS3
    simulator_url: str
    receiver_url: str
    worker_env: dict[str, str]

    def s3_settings(self) -> dict[str, str]:
        return {
            "s3_bucket": BUCKET,
            "s3_endpoint_url": self.s3.endpoint_url,
            "s3_region": "us-east-1",
            "s3_addressing_style": "path",
            "s3_access_key_id": self.s3.access_key,
            "s3_secret_access_key": self.s3.secret_key,
        }


def simulator(port: int, *flags: str) -> "object":
    args = [PYTHON, "-m", "imagedock", "simulator", "--port", str(port)]
    args += ["--queued-seconds", "0", "--processing-seconds", "0", "--progress-steps", "1"]
    process = start([*args, *flags])
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/v2/me"), "the simulator")
    return process


@contextmanager
def stack(*simulator_flags: str, log: Path | None = None, **changes: str) -> Iterator[Stack]:
    """Redis, S3, the simulator and the receiver; workers are started by `worker()`. `changes`
    are settings (`poll_after="600"`) for both."""
    with private_redis() as redis_url, local_s3(BUCKET) as s3, ExitStack() as processes:
        sim_port, receiver_port = free_port(), free_port()
        sim = simulator(sim_port, *simulator_flags)
        processes.callback(stop, sim)  # type: ignore[arg-type]
        found = Stack(redis_url, s3, f"http://127.0.0.1:{sim_port}", "", {})
        settings = {
            **found.s3_settings(),
            "apiframe_url": found.simulator_url,
            "download_hosts": "127.0.0.1",
            **changes,
        }
        ours = receiver(redis_url, receiver_port, log=log, **settings)
        processes.callback(stop, ours)
        found.receiver_url = f"http://127.0.0.1:{receiver_port}"
        found.worker_env = imagedock_env(redis_url, **settings)
        yield found


@contextmanager
def worker(env: dict[str, str], log: Path | None = None) -> Iterator[int]:
    """`imagedock worker`, started and polling its queue (arq's health check key is written on
    the loop's first turn, and deleted when a worker stops); yields its pid."""
    process = start([PYTHON, "-m", "imagedock", "worker"], env, log=log)
    client = redis.Redis.from_url(env["IMAGEDOCK_REDIS_URL"])
    try:
        ready = LANDING_QUEUE + health_check_key_suffix
        wait_for(lambda: process.poll() is None and bool(client.exists(ready)), "imagedock worker")
        yield process.pid
    finally:
        client.close()
        stop(process)


async def submitted(stack: Stack, count: int, prompt: str) -> list[Landable]:
    """`count` jobs submitted to the simulator, completed, and recorded QUEUED in the ledger."""
    redis = await connect(stack.redis_url)
    ledger = Ledger(redis)
    headers = {"X-API-Key": API_KEY}
    async with httpx.AsyncClient(base_url=stack.simulator_url, headers=headers, timeout=30) as api:

        async def make(n: int) -> Job:
            answer = await api.post(
                "/v2/images/generate", json={"model": MODEL, "prompt": f"{prompt} {n}"}
            )
            job_id = answer.json()["jobId"]
            while True:
                job = (await api.get(f"/v2/jobs/{job_id}")).json()
                if job["status"] == "COMPLETED":
                    break
                await asyncio.sleep(0.01)
            record, _ = await ledger.create(
                prompt=f"{prompt} {n}", model=MODEL, job_id=job_id, status=Status.QUEUED
            )
            return Landable(record.ref, job_id, tuple(job["result"]["images"]))

        try:
            return [
                job for job in await gathered(count, make, width=20) if isinstance(job, Landable)
            ]
        finally:
            await redis.aclose()


def completed_webhook(job: Landable) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "event": "completed",
            "jobId": job.job_id,
            "status": "COMPLETED",
            "progress": 100,
            "result": {"images": list(job.urls)},
            "model": MODEL,
            "creditCost": 10,
            "completedAt": "2026-11-24T12:00:00Z",
        }
    ).encode()
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, API_KEY)}
    return body, headers


@asynccontextmanager
async def webhook_client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.receiver_url, timeout=30) as client:
        yield client


async def send_webhook(client: httpx.AsyncClient, job: Landable) -> float:
    """POST the job's completed webhook; returns the wall-clock time it was sent."""
    body, headers = completed_webhook(job)
    sent = time.time()
    answer = await client.post(
        "/webhooks/apiframe", params={"ref": job.ref}, content=body, headers=headers
    )
    if answer.status_code != 200:
        raise RuntimeError(f"the receiver answered {answer.status_code}: {answer.text}")
    return sent


async def landed_count(redis: ArqRedis) -> int:
    return int(await redis.zcard(BY_STATUS + Status.LANDED.value))


async def until_landed(redis: ArqRedis, count: int, within: float = 300.0) -> None:
    """Until `count` records are LANDED; checked every 5 ms (one ZCARD)."""
    deadline = time.monotonic() + within
    while await landed_count(redis) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} jobs landed within {within:g} s")
        await asyncio.sleep(0.005)


async def send_all(stack: Stack, jobs: Sequence[Landable], width: int = 20) -> None:
    """Every job's signed webhook, `width` at a time over as many kept-alive connections. The
    requests are written whole and answers read by hand: an HTTP client would spend more CPU
    than the receiver does, on the same two cores as what is measured."""
    url = httpx.URL(stack.receiver_url)
    requests = [webhook_request(url, job) for job in jobs]

    async def connection(mine: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            for request in mine:
                writer.write(request)
                status, body = await read_answer(reader)
                if status != 200:
                    raise RuntimeError(f"the receiver answered {status}: {body!r}")
        finally:
            writer.close()

    await asyncio.gather(*(connection(requests[n::width]) for n in range(width)))


def webhook_request(url: httpx.URL, job: Landable) -> bytes:
    body, headers = completed_webhook(job)
    head = [
        f"POST /webhooks/apiframe?ref={job.ref} HTTP/1.1",
        f"Host: {url.host}:{url.port}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """An HTTP/1.1 answer with a Content-Length: its status and body."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = next(
        int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:")
    )
    return int(head[0].split()[1]), await reader.readexactly(length)
