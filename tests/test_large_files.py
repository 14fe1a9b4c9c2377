"""A large video lands by parts, with the worker's memory flat: its peak is that of an image."""

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from tests.support.processes import killable_worker
from tests.support.stack import BUCKET, Stack
from tests.support.waiting import eventually

MiB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


async def landed_by_a_new_worker(stack: Stack, **body: Any) -> tuple[str, int]:
    """Submit a job, land it with a worker process of its own; the job and the worker's peak."""
    with killable_worker(stack) as worker:
        job_id = (await stack.submit(**body))["jobId"]

        async def landed() -> bool:
            status: str = (await stack.job(job_id))["status"]
            return status == "LANDED"

        await eventually(landed, f"job {job_id} landed", deadline=240)
        return job_id, peak_rss(worker.pid)


def stored_sha256(stack: Stack, key: str) -> str:
    digest = hashlib.sha256()
    body = stack.s3.get_object(Bucket=BUCKET, Key=key)["Body"]
    for chunk in iter(lambda: body.read(MiB), b""):
        digest.update(chunk)
    return digest.hexdigest()


async def test_a_300_mb_video_lands_by_parts_in_flat_memory(stack: Stack) -> None:
    """A 300 MiB video lands byte for byte, and the worker that lands it peaks within 40 MB of
    one that lands a 5 MiB image."""
    stack.sim.config.image_bytes = 5 * MiB
    _, image_peak = await landed_by_a_new_worker(stack, prompt="a still")
    stack.sim.config.video_bytes = 300 * MiB
    video_job, video_peak = await landed_by_a_new_worker(
        stack, prompt="a long take", operation="videos/generate", model="kling-3.0"
    )
    assert video_peak - image_peak < 40 * 1000 * 1000, (video_peak, image_peak)
    [video] = (await stack.job(video_job))["objects"]
    assert video["bytes"] == 300 * MiB
    url = stack.sim.jobs[video_job].outputs["videoUrl"]  # type: ignore[index]
    expected = await asyncio.to_thread(stack.sim.image(url).sha256)
    assert video["sha256"] == expected
    assert await asyncio.to_thread(stored_sha256, stack, video["key"]) == expected
