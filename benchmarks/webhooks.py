"""Webhook intake against the receiver's own health check, measured in one run.

The receiver runs as its own process (`imagedock receiver`); this process sends signed `completed`
webhooks, each for a different submitted job, and the same number of `GET /healthz`, with the same
concurrency. The ratio says what verifying, recording and enqueueing costs over an empty route.
"""

import asyncio
import json
import os
import statistics
import sys
import time
import uuid

import httpx

from simulator.local_s3 import free_port
from worker.ledger import Ledger
from worker.queue import connect
from worker.signatures import sign

KEY = "afk_bench_000000000000000000000000000000000"
REQUESTS = 2000
CONCURRENCY = 32


async def hammer(send: "asyncio.Queue[httpx.Request]", http: httpx.AsyncClient) -> list[float]:
    latencies = []
    while not send.empty():
        request = send.get_nowait()
        started = time.perf_counter()
        response = await http.send(request)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return latencies


async def measure(http: httpx.AsyncClient, requests: list[httpx.Request]) -> tuple[float, float]:
    queue: asyncio.Queue[httpx.Request] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    started = time.perf_counter()
    batches = await asyncio.gather(*(hammer(queue, http) for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    latencies = sorted(value for batch in batches for value in batch)
    return len(requests) / elapsed, statistics.quantiles(latencies, n=100)[98]


async def main() -> None:
    redis_url = os.environ.get("IMAGEDOCK_REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
    redis_url += "/13"
    port = free_port()
    env = {
        **os.environ,
        "IMAGEDOCK_REDIS_URL": redis_url,
        "IMAGEDOCK_APIFRAME_KEY": KEY,
        "IMAGEDOCK_API_TOKEN": "bench",
        "IMAGEDOCK_LOG_LEVEL": "WARNING",
        "IMAGEDOCK_APIFRAME_URL": "http://127.0.0.1:9",
    }
    redis = await connect(redis_url)
    await redis.flushdb()
    ledger = Ledger(redis)
    jobs = []
    for n in range(REQUESTS):
        record, _ = await ledger.create(prompt=f"bench {n}", model="grok-imagine-image")
        job_id = str(uuid.uuid4())
        await ledger.attach(record.ref, job_id)
        jobs.append((record.ref, job_id))
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imagedock.cli", "receiver", "--port", str(port), env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(
            base_url=base, limits=httpx.Limits(max_connections=64)
        ) as http:
            for _ in range(100):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            health = [http.build_request("GET", "/healthz") for _ in range(REQUESTS)]
            hooks = []
            for ref, job_id in jobs:
                body = json.dumps(
                    {
                        "event": "completed",
                        "jobId": job_id,
                        "status": "COMPLETED",
                        "progress": 100,
                        "result": {"images": [f"https://cdn2.apiframe.ai/images/{job_id}-1.png"]},
                    }
                ).encode()
                headers = {
                    "Content-Type": "application/json",
                    "X-Webhook-Signature": sign(body, KEY),
                }
                hooks.append(
                    http.build_request(
                        "POST",
                        "/webhooks/apiframe",
                        params={"ref": ref},
                        content=body,
                        headers=headers,
                    )
                )
            await measure(http, health[:200])  # warm up connections and code paths
            health_rate, health_p99 = await measure(http, health)
            hook_rate, hook_p99 = await measure(http, hooks)
    finally:
        receiver.terminate()
        await receiver.wait()
        await redis.flushdb()
        await redis.aclose()
    print(f"GET /healthz (reference): {health_rate:8.0f} req/s   p99 {health_p99 * 1000:6.1f} ms")
    print(f"POST /webhooks/apiframe:  {hook_rate:8.0f} req/s   p99 {hook_p99 * 1000:6.1f} ms")
    print(
        f"ratio, webhook/reference: throughput {hook_rate / health_rate:.2f}, "
        f"p99 latency {hook_p99 / health_p99:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
