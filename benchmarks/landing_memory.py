"""Memory while landing a 50 MB image, against reading the same image into memory, in one run.

Both fetch the same file from the simulator's CDN over loopback. The reference keeps the body in
memory, as a naive `response.content` and one `put_object` would; imagedock streams it through a
spooled file into a checksummed S3 write. Python's peak allocations are traced for each.
"""

import asyncio
import tracemalloc
from collections.abc import Awaitable, Callable

import httpx

from imagedock.clients import open_deps
from simulator import Simulator, SimulatorConfig
from simulator.local_s3 import local_s3
from simulator.serving import serving
from worker.apiframe.models import MODEL as GROK
from worker.download import Downloader
from worker.hosts import HostPolicy
from worker.settings import load_settings
from worker.storage import Blob

SIZE = 50 * 1024 * 1024 - 4096
BUCKET = "bench"


async def peak(work: Callable[[], Awaitable[None]]) -> int:
    tracemalloc.start()
    try:
        await work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def main() -> None:
    simulator = Simulator(SimulatorConfig(queued_seconds=0, processing_seconds=0, image_bytes=SIZE))
    with local_s3(BUCKET) as s3:
        settings = load_settings(
            s3_bucket=BUCKET,
            s3_endpoint_url=s3.endpoint_url,
            s3_addressing_style="path",
            s3_region="us-east-1",
            s3_access_key_id=s3.access_key,
            s3_secret_access_key=s3.secret_key,
        )
        async with (
            open_deps(settings) as deps,
            serving(simulator.app) as url,
            httpx.AsyncClient(timeout=60) as http,
        ):
            store = deps.store
            job = await http.post(
                f"{url}/v2/images/generate",
                json={"model": GROK, "prompt": "bench"},
                headers={"X-API-Key": "afk_bench"},
            )
            await simulator.settle()
            [image_url] = simulator.jobs[job.json()["jobId"]].image_urls
            downloader = Downloader(http, HostPolicy(["127.0.0.1"]), 60 * 1024 * 1024)

            async def in_memory() -> None:
                body = (await http.get(image_url)).content
                assert len(body) == simulator.image(image_url).size

            async def landed() -> None:
                download = await downloader.fetch(image_url)
                try:
                    blob = Blob.of(download, {"sha256": download.sha256})
                    await store.put_once("bench/1.png", blob)
                finally:
                    download.close()

            reference = await peak(in_memory)
            imagedock = await peak(landed)
    mib = 1024 * 1024
    print(f"image: {simulator.image(image_url).size / mib:.1f} MiB")
    print(f"whole body in memory (reference): peak {reference / mib:7.1f} MiB")
    print(f"imagedock download + S3 write:    peak {imagedock / mib:7.1f} MiB")
    print(f"ratio, imagedock/reference: {imagedock / reference:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
