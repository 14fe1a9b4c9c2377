"""The large-file benchmark's reference, a process of its own: one URL streamed with httpx into
an S3 multipart upload of 8 MiB parts, each part sent on a thread while the next one downloads
(the same pipelining imagedock does, and nothing else: no digest, no type check, no ledger).
Prints one JSON line: seconds, CPU seconds, bytes and this process's peak RSS.

`python -m benchmarks.bare_multipart URL KEY` with the S3 settings in IMAGEDOCK_S3_*.
"""

import asyncio
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from benchmarks.bare_copy import THREADS, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

PART = 8 * 1024 * 1024  # imagedock's part size


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def copy(url: str, key: str) -> tuple[float, float, int]:
    client, bucket = s3_client(), os.environ["IMAGEDOCK_S3_BUCKET"]
    threads = ThreadPoolExecutor(THREADS)
    loop = asyncio.get_running_loop()
    started, cpu = time.monotonic(), time.process_time()
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags: list[str] = []
    sending: asyncio.Future[dict[str, str]] | None = None
    size, buffer = 0, bytearray()

    async def send(part: bytes) -> None:
        nonlocal sending
        if sending is not None:
            etags.append((await sending)["ETag"])
        number = len(etags) + 1
        sending = loop.run_in_executor(
            threads,
            lambda: client.upload_part(  # type: ignore[arg-type, return-value]
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=part
            ),
        )

    async with httpx.AsyncClient(timeout=60) as http, http.stream("GET", url) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            size += len(chunk)
            buffer += chunk
            if len(buffer) >= PART:
                await send(bytes(buffer))
                buffer = bytearray()
    if buffer:
        await send(bytes(buffer))
    if sending is not None:
        etags.append((await sending)["ETag"])
    parts: list[CompletedPartTypeDef] = [
        {"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, start=1)
    ]
    client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    took, cpu = time.monotonic() - started, time.process_time() - cpu
    threads.shutdown()
    return took, cpu, size


def main() -> None:
    took, cpu, size = asyncio.run(copy(sys.argv[1], sys.argv[2]))
    print(json.dumps({"seconds": took, "cpu": cpu, "bytes": size, "peak_rss": peak_rss()}))


if __name__ == "__main__":
    main()
