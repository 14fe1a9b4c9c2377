"""A large video: `imagedock worker` landing a 300 MiB MP4 from the simulator's CDN into
SeaweedFS, against a bare multipart copy of the same file (`benchmarks.bare_multipart`: httpx
into boto3 `upload_part`, 8 MiB parts, one sent while the next downloads), in alternating rounds.

Each imagedock round starts a fresh worker, lets it land one small job (every code path loaded),
then sends the video job's signed `completed` webhook and times it to LANDED; its peak RSS
(VmHWM) is read after each. The reference runs as a process of its own, also fresh each round.

`python -m benchmarks.large_video [--out FILE] [--quick]`
"""

import asyncio
import json
import subprocess
import time
from dataclasses import dataclass

import httpx

from benchmarks.processes import API_KEY, PYTHON, cpu_seconds, peak_rss
from benchmarks.results import Result, Row, begin, median, ratio, say, table
from benchmarks.stack import (
    BUCKET,
    Landable,
    Stack,
    landed_count,
    send_all,
    stack,
    submitted,
    until_landed,
    webhook_client,
    worker,
)
from worker.apiframe.signatures import sign
from worker.ledger.ledger import Ledger
from worker.runtime.queue import connect
from worker.status import Status

MiB = 1024 * 1024
MODEL = "kling-3.0"


@dataclass(frozen=True)
class Plan:
    video_bytes: int = 300 * MiB
    rounds: int = 3


QUICK = Plan(video_bytes=64 * MiB, rounds=1)


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu: float  # CPU seconds of the copying process over the copy
    peak: int  # the copying process's VmHWM, bytes


async def video_job(found: Stack, n: int) -> tuple[str, str, str]:
    """A video job completed on the simulator and recorded QUEUED: (ref, job id, video URL)."""
    headers = {"X-API-Key": API_KEY}
    async with httpx.AsyncClient(base_url=found.simulator_url, headers=headers, timeout=60) as api:
        body = {"model": MODEL, "prompt": f"a long take {n}"}
        job_id = (await api.post("/v2/videos/generate", json=body)).json()["jobId"]
        while True:  # the simulator finishes it at once; its CDN then serves the file
            job = (await api.get(f"/v2/jobs/{job_id}")).json()
            if job["status"] == "COMPLETED":
                break
            await asyncio.sleep(0.01)
    redis = await connect(found.redis_url)
    try:
        record, _ = await Ledger(redis).create(
            prompt=body["prompt"],
            model=MODEL,
            job_id=job_id,
            status=Status.QUEUED,
            lineage={"operation": "videos/generate"},
        )
    finally:
        await redis.aclose()
    return record.ref, job_id, str(job["result"]["videoUrl"])


async def land_video(found: Stack, ref: str, job_id: str, url: str) -> float:
    """Send the video's completed webhook; seconds until it is LANDED."""
    body = json.dumps(
        {"event": "completed", "jobId": job_id, "status": "COMPLETED", "progress": 100,
         "result": {"videoUrl": url}, "model": MODEL}
    ).encode()  # fmt: skip
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, API_KEY)}
    redis = await connect(found.redis_url)
    try:
        before = await landed_count(redis)
        async with webhook_client(found) as client:
            started = time.monotonic()
            answer = await client.post(
                "/webhooks/apiframe", params={"ref": ref}, content=body, headers=headers
            )
            assert answer.status_code == 200, answer.text
            await until_landed(redis, before + 1, within=600)
            return time.monotonic() - started
    finally:
        await redis.aclose()


def ours(found: Stack, n: int) -> Run:
    warm: list[Landable] = asyncio.run(submitted(found, 1, f"warm {n}"))
    ref, job_id, url = asyncio.run(video_job(found, n))
    with worker(found.worker_env) as pid:
        asyncio.run(send_and_wait(found, warm))
        cpu = cpu_seconds(pid)
        seconds = asyncio.run(land_video(found, ref, job_id, url))
        return Run(seconds, cpu_seconds(pid) - cpu, peak_rss(pid))


async def send_and_wait(found: Stack, jobs: list[Landable]) -> None:
    redis = await connect(found.redis_url)
    try:
        before = await landed_count(redis)
        await send_all(found, jobs)
        await until_landed(redis, before + len(jobs))
    finally:
        await redis.aclose()


def reference(found: Stack, n: int) -> Run:
    _, _, url = asyncio.run(video_job(found, 1000 + n))
    done = subprocess.run(  # noqa: S603 - our own arguments
        [PYTHON, "-m", "benchmarks.bare_multipart", url, f"reference/{n}.mp4"],
        env=found.worker_env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return Run(figures["seconds"], figures["cpu"], figures["peak_rss"])


def main() -> None:
    args, result = begin("large_video", "Large video landing")
    plan = QUICK if args.quick else Plan()
    runs: dict[str, list[Run]] = {"imagedock worker": [], "bare multipart copy": []}
    with stack("--video-bytes", str(plan.video_bytes), poll_after="600") as found:
        for n in range(plan.rounds):
            order = ["imagedock worker", "bare multipart copy"]
            for name in order if n % 2 == 0 else list(reversed(order)):
                run = ours(found, n) if name == "imagedock worker" else reference(found, n)
                runs[name].append(run)
                say(f"  {name:20} {plan.video_bytes / MiB / run.seconds:7.1f} MiB/s  "
                    f"CPU {run.cpu:5.2f} s  peak RSS {run.peak / MiB:6.1f} MiB")  # fmt: skip
    report(result, plan, runs)
    result.finish(args.out)


def report(result: Result, plan: Plan, runs: dict[str, list[Run]]) -> None:
    size = plan.video_bytes / MiB
    mine, bare = runs["imagedock worker"], runs["bare multipart copy"]
    rate, ref_rate = median(size / r.seconds for r in mine), median(size / r.seconds for r in bare)
    peak, ref_peak = median(r.peak for r in mine), median(r.peak for r in bare)
    cpu, ref_cpu = median(r.cpu for r in mine), median(r.cpu for r in bare)
    reference_name = "bare multipart copy (httpx into boto3 upload_part, 8 MiB parts)"
    result.rows += [
        Row(f"{size:.0f} MiB video: MiB/s", f"{rate:.1f}", reference_name, f"{ref_rate:.1f}",
            ratio(rate, ref_rate), "≥ 0.90", rate >= 0.9 * ref_rate),
        Row(f"{size:.0f} MiB video: peak RSS of the process", f"{peak / MiB:.1f} MiB",
            reference_name, f"{ref_peak / MiB:.1f} MiB", ratio(peak, ref_peak), "", None),
        Row(f"{size:.0f} MiB video: CPU seconds", f"{cpu:.2f}", reference_name, f"{ref_cpu:.2f}",
            ratio(cpu, ref_cpu), "", None),
    ]  # fmt: skip
    result.notes.append(
        f"{plan.rounds} rounds of each, alternating, the order reversed every other round; "
        "figures are medians. imagedock's time runs from its `completed` webhook to LANDED "
        "(webhook, queue, download, the SHA-256 of every byte, the magic-byte check, the "
        "multipart upload, the manifest, the ledger); the reference's from its first request to "
        "its completed upload. Both read the simulator's CDN and write SeaweedFS on loopback, "
        f"in 8 MiB parts with one in flight, boto3 on 16 threads. Bucket `{BUCKET}`."
    )
    rows = [
        (name, n, f"{size / run.seconds:.1f}", f"{run.seconds:.2f}", f"{run.cpu:.2f}",
         f"{run.peak / MiB:.1f}")
        for name, found in runs.items()
        for n, run in enumerate(found, start=1)
    ]  # fmt: skip
    header = ["process", "round", "MiB/s", "seconds", "CPU s", "peak RSS MiB"]
    result.details.append("Rounds:\n\n" + table(header, rows))


if __name__ == "__main__":
    main()
