"""Memory: the peak resident set (VmHWM) of an `imagedock worker` process landing 50 MB images,
against the same worker landing 5 MB images, in alternating rounds.

Each round starts a fresh worker (a peak only grows), lets it land one small job to load every
code path, reads VmHWM, then lands the round's jobs one after another (each webhook sent when the
last job is LANDED) and reads VmHWM again. The difference between the two sizes is what landing a
larger image costs in memory: imagedock streams it, into a multipart upload of 8 MiB parts past
one part.

`python -m benchmarks.landing_memory [--out FILE] [--quick]`
"""

import asyncio
from dataclasses import dataclass

from benchmarks.processes import peak_rss
from benchmarks.results import Row, begin, median, say, table
from benchmarks.stack import (
    Landable,
    Stack,
    landed_count,
    send_all,
    stack,
    submitted,
    until_landed,
    worker,
)
from worker.runtime.queue import connect

MB = 1_000_000
MiB = 1024 * 1024
SIZES = (5 * MB, 50 * MB)
JOBS = 3
ROUNDS = 2


@dataclass(frozen=True)
class Peak:
    warm: int  # VmHWM after one small landing
    landed: int  # VmHWM after the round's jobs


async def land_one_by_one(found: Stack, jobs: list[Landable]) -> None:
    redis = await connect(found.redis_url)
    try:
        for job in jobs:
            before = await landed_count(redis)
            await send_all(found, [job])
            await until_landed(redis, before + 1)
    finally:
        await redis.aclose()


def main() -> None:
    args, result = begin("memory", "Worker memory", "landing_memory")
    rounds = 1 if args.quick else ROUNDS
    peaks: dict[int, list[Peak]] = {size: [] for size in SIZES}
    # One simulator per size (its CDN pads every file to its size), alive for the whole run, so
    # rounds can alternate: 5 MB, 50 MB, 50 MB, 5 MB, ...
    with (
        stack("--image-bytes", str(SIZES[0])) as small,
        stack("--image-bytes", str(SIZES[1])) as large,
    ):
        stacks = {SIZES[0]: small, SIZES[1]: large}
        for n in range(rounds):
            for size in SIZES if n % 2 == 0 else tuple(reversed(SIZES)):
                found = stacks[size]
                warmup, *jobs = asyncio.run(submitted(found, JOBS + 1, f"memory {size} {n}"))
                with worker(found.worker_env) as pid:
                    asyncio.run(land_one_by_one(found, [warmup]))
                    warm = peak_rss(pid)
                    asyncio.run(land_one_by_one(found, jobs))
                    peak = Peak(warm, peak_rss(pid))
                peaks[size].append(peak)
                say(f"  {size / MB:4.0f} MB images: VmHWM {peak.warm / MiB:6.1f} MiB after one, "
                    f"{peak.landed / MiB:6.1f} MiB after {JOBS} more")  # fmt: skip
    small_peak = median(p.landed for p in peaks[SIZES[0]])
    large_peak = median(p.landed for p in peaks[SIZES[1]])
    difference = (large_peak - small_peak) / MiB
    result.rows.append(
        Row("worker peak RSS landing 50 MB images", f"{large_peak / MiB:.1f} MiB",
            "the same, landing 5 MB images", f"{small_peak / MiB:.1f} MiB",
            f"{large_peak / small_peak:.2f} (+{difference:.1f} MiB)", "difference < 20 MB",
            (large_peak - small_peak) < 20 * MB)
    )  # fmt: skip
    result.notes.append(
        f"{rounds} rounds of each size, alternating, each with a fresh `imagedock worker` "
        f"process: one warm-up landing, then {JOBS} jobs of one image each, landed one after "
        "another; medians of VmHWM from /proc/<pid>/status. 50 MB is 50,000,000 bytes, under "
        "the 50 MiB default `IMAGEDOCK_MAX_IMAGE_BYTES`."
    )
    rows = [
        (f"{size / MB:.0f} MB", n + 1, f"{p.warm / MiB:.1f}", f"{p.landed / MiB:.1f}")
        for size, found in peaks.items()
        for n, p in enumerate(found)
    ]
    result.details.append(
        "Rounds:\n\n"
        + table(["images", "round", "VmHWM after warm-up, MiB", "VmHWM after the jobs, MiB"], rows)
    )
    result.finish(args.out)


if __name__ == "__main__":
    main()
