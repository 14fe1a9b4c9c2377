"""The landing benchmark's reference, a process of its own: each URL streamed with httpx into
memory and written with one boto3 `put_object`, at the worker's concurrency (20 at once, boto3 on
16 threads), with no ledger, no checks and no manifest. With `--manifest`, each copy then writes
a small JSON object of its own as well, as every landed job does: the floor a job's second PUT
sets. Prints one JSON line: seconds, CPU seconds (both from the first request to the last
write), bytes, images, and the settings it ran with.

`python -m benchmarks.bare_copy URLS_FILE PREFIX [--manifest]` with the S3 settings in
IMAGEDOCK_S3_*.
"""

import asyncio
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONCURRENCY = 20  # the landing worker's max_jobs
THREADS = 16  # IMAGEDOCK_S3_CONCURRENCY's default
SETTINGS = (
    f"{CONCURRENCY} copies in flight; httpx.AsyncClient (timeout 60 s, otherwise its defaults), "
    f"`aiter_raw` into a BytesIO; one boto3 client (s3v4, path-style, max_pool_connections "
    f"{THREADS}, otherwise its defaults: over plain HTTP it signs each body with its SHA-256 and "
    f"sends a CRC32) on a {THREADS}-thread pool; `put_object(Bucket, Key, Body)`, nothing else"
)


def s3_client() -> "S3Client":
    """The references' boto3 client, from the IMAGEDOCK_S3_* settings in the environment."""
    env = os.environ
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=env["IMAGEDOCK_S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["IMAGEDOCK_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["IMAGEDOCK_S3_SECRET_ACCESS_KEY"],
        config=Config(
            signature_version="s3v4", s3={"addressing_style": "path"}, max_pool_connections=THREADS
        ),
    )
    return client


async def copy_all(urls: list[str], prefix: str, manifest: bool) -> tuple[float, float, int]:
    client, bucket = s3_client(), os.environ["IMAGEDOCK_S3_BUCKET"]
    threads = ThreadPoolExecutor(THREADS)
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(CONCURRENCY)
    copied = 0

    async def copy(n: int, url: str, http: httpx.AsyncClient) -> None:
        nonlocal copied
        async with limit:
            body = io.BytesIO()
            async with http.stream("GET", url) as response:
                response.raise_for_status()
                async for chunk in response.aiter_raw():
                    body.write(chunk)
            data = body.getvalue()
            key = f"{prefix}{n}.png"
            await loop.run_in_executor(
                threads, lambda: client.put_object(Bucket=bucket, Key=key, Body=data)
            )
            if manifest:
                about = json.dumps({"url": url, "key": key, "bytes": len(data)}).encode()
                await loop.run_in_executor(
                    threads,
                    lambda: client.put_object(Bucket=bucket, Key=f"{key}.json", Body=about),
                )
            copied += len(data)

    async with httpx.AsyncClient(timeout=60) as http:
        started, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(copy(n, url, http) for n, url in enumerate(urls)))
        took, cpu = time.monotonic() - started, time.process_time() - cpu
    threads.shutdown()
    return took, cpu, copied


def main() -> None:
    urls = Path(sys.argv[1]).read_text().split()
    manifest = "--manifest" in sys.argv[3:]
    took, cpu, copied = asyncio.run(copy_all(urls, sys.argv[2], manifest))
    figures = {"seconds": took, "cpu": cpu, "bytes": copied, "images": len(urls)}
    print(json.dumps({**figures, "settings": SETTINGS}))


if __name__ == "__main__":
    main()
