"""Landing throughput: images from the simulator's CDN into SeaweedFS, webhook to LANDED, against a
bare copy of the same files at the same concurrency, in alternating rounds.

For each size, a round of imagedock sends the jobs' signed `completed` webhooks to `imagedock
receiver` (20 at a time) and times until every job is LANDED (`imagedock worker` downloads,
hashes, writes create-only with checksums, writes the manifest, moves the ledger, publishes the
event). A round of the reference runs `benchmarks.bare_copy` on the same URLs: httpx into memory,
one `put_object` each, 20 at a time on 16 boto3 threads, no ledger and no checks.

`python -m benchmarks.landing [--out FILE] [--quick]`
"""

import asyncio
import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import profiles
from benchmarks.processes import PYTHON, cpu_seconds
from benchmarks.results import Row, begin, median, ratio, say, table
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

MiB = 1024 * 1024


@dataclass(frozen=True)
class Size:
    name: str
    image_bytes: int
    jobs: int
    target: float


SIZES = (Size("4 MiB", 4 * MiB, 40, 0.9), Size("256 KiB", 256 * 1024, 160, 0.8))
ROUNDS = 3


@dataclass(frozen=True)
class Round:
    seconds: float
    bytes: int
    images: int
    cpu: float  # the copying process's CPU seconds

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.bytes / MiB / self.seconds


async def land_round(found: Stack, jobs: list[Landable], size: int, pid: int) -> Round:
    redis = await connect(found.redis_url)
    try:
        before = await landed_count(redis)
        spent = cpu_seconds(pid)
        started = time.monotonic()
        await send_all(found, jobs)
        await until_landed(redis, before + len(jobs))
        took = time.monotonic() - started
        return Round(took, size * len(jobs), len(jobs), cpu_seconds(pid) - spent)
    finally:
        await redis.aclose()


def copy_round(
    found: Stack, jobs: list[Landable], prefix: str, directory: Path, *flags: str
) -> tuple[Round, str]:
    """A round of the bare copy (with `--manifest`, of the floor); and the copy's settings."""
    urls = directory / (prefix.strip("/").replace("/", "-").replace(" ", "") + ".txt")
    urls.write_text("\n".join(url for job in jobs for url in job.urls))
    args = [PYTHON, "-m", "benchmarks.bare_copy", str(urls), prefix, *flags]
    done = subprocess.run(args, env=found.worker_env, capture_output=True, check=True)  # noqa: S603
    figures = json.loads(done.stdout.decode().splitlines()[-1])
    measured = Round(figures["seconds"], figures["bytes"], figures["images"], figures["cpu"])
    return measured, figures["settings"]


# Who is measured, in the order of the first round: imagedock, the bare copy, and the floor (the
# bare copy writing a small second object per image, as imagedock writes a job's manifest).
CONTENDERS = ("imagedock", "bare copy", "copy + manifest")
REFERENCE = "bare copy: httpx into memory, one put_object, same concurrency"
FLOOR = "the floor: the bare copy, plus a small second put_object per image (the manifest)"


def main() -> None:
    args, result = begin("landing", "Landing throughput")
    rounds = 1 if args.quick else ROUNDS
    directory = Path(tempfile.mkdtemp(prefix="imagedock-bench-landing-"))
    details = []
    settings = ""
    for size in SIZES:
        jobs_per_round = max(4, size.jobs // 4) if args.quick else size.jobs
        say(f"landing: {size.name} images, {jobs_per_round} jobs a round")
        measured: dict[str, list[Round]] = {name: [] for name in CONTENDERS}
        with (
            stack("--image-bytes", str(size.image_bytes)) as found,
            worker(found.worker_env) as pid,
        ):
            # Every round lands jobs of its own; the first batch only warms the worker.
            count = 1 + rounds * len(CONTENDERS)
            batches = iter(asyncio.run(batched(found, count, jobs_per_round, size.name)))
            actual = size.image_bytes  # the CDN pads each file to exactly this size
            asyncio.run(land_round(found, next(batches), actual, pid))
            profile = None
            for n in range(rounds):
                shift = n % len(CONTENDERS)  # each contender goes first in turn
                for which in CONTENDERS[shift:] + CONTENDERS[:shift]:
                    batch = next(batches)
                    if which == "imagedock":
                        got = asyncio.run(land_round(found, batch, actual, pid))
                    else:
                        flags = ("--manifest",) if which == "copy + manifest" else ()
                        prefix = f"bare/{size.image_bytes}/{n}/{len(flags)}/"
                        got, settings = copy_round(found, batch, prefix, directory, *flags)
                    measured[which].append(got)
                    say(f"  {which:16} {got.images_per_second:7.1f} images/s  "
                        f"{got.mb_per_second:7.1f} MiB/s  cpu {got.cpu:.2f} s "
                        f"in {got.seconds:.2f} s")  # fmt: skip
            if not args.quick:
                profile = profile_landing(found, pid, jobs_per_round, actual, size.name)
        rate, ref_rate, floor_rate = (
            median(r.mb_per_second for r in measured[name]) for name in CONTENDERS
        )
        images, ref_images = (
            median(r.images_per_second for r in measured[name]) for name in CONTENDERS[:2]
        )
        met = rate >= size.target * ref_rate
        result.rows.append(
            Row(f"{size.name} x {jobs_per_round} jobs: MiB/s", f"{rate:.1f}", REFERENCE,
                f"{ref_rate:.1f}", ratio(rate, ref_rate), f"≥ {size.target:.2f}", met)
        )  # fmt: skip
        result.rows.append(
            Row(f"{size.name}: images/s", f"{images:.1f}", REFERENCE, f"{ref_images:.1f}",
                ratio(images, ref_images), "", None)
        )  # fmt: skip
        result.rows.append(
            Row(f"{size.name}: MiB/s against the floor", f"{rate:.1f}", FLOOR,
                f"{floor_rate:.1f}", ratio(rate, floor_rate), "", None)
        )  # fmt: skip
        cpu = {name: median(r.cpu / r.images for r in measured[name]) for name in CONTENDERS}
        result.notes.append(
            f"At {size.name}, CPU per image in the copying process: imagedock's worker "
            f"{cpu['imagedock'] * 1000:.1f} ms, the bare copy {cpu['bare copy'] * 1000:.1f} ms, "
            f"the floor {cpu['copy + manifest'] * 1000:.1f} ms."
        )
        rows = [
            (name, n + 1, f"{r.seconds:.2f}", f"{r.images_per_second:.1f}",
             f"{r.mb_per_second:.1f}", f"{r.cpu:.2f}")
            for name in CONTENDERS
            for n, r in enumerate(measured[name])
        ]  # fmt: skip
        header = ["", "round", "seconds", "images/s", "MiB/s", "copying process CPU s"]
        details.append(f"Rounds, {size.name}:\n\n" + table(header, rows))
        if profile:
            details.append(profile)
    result.notes.append(f"The bare copy's settings: {settings}.")
    result.notes.append(
        f"{ROUNDS} rounds of each, each contender first in turn; medians. imagedock's time runs "
        "from the first webhook sent to the last job LANDED (the ledger's LANDED index checked "
        "every 5 ms); the copies' from their first request to their last write. The webhooks "
        "are written by hand over 20 kept-alive connections, so the sender costs little of the "
        "two cores everything shares. The worker landed one batch before the first round. "
        "SeaweedFS (`weed mini`), the simulator, Redis, the receiver and the worker each run as "
        "their own process on the same 2 cores; plain HTTP to S3, so boto3 sends no aws-chunked "
        "trailer."
    )
    result.details += details
    shutil.rmtree(directory, ignore_errors=True)
    result.finish(args.out)


async def batched(found: Stack, count: int, size: int, name: str) -> list[list[Landable]]:
    return [await submitted(found, size, f"landing {name} {n}") for n in range(count)]


def profile_landing(found: Stack, pid: int, jobs: int, size: int, name: str) -> str:
    """py-spy on the worker while it lands one more batch (not counted)."""
    batch = asyncio.run(submitted(found, jobs, f"profile {name}"))
    box: dict[str, object] = {}
    sampler = threading.Thread(
        target=lambda: box.setdefault("stacks", profiles.record(pid, 4, gil=True))
    )
    sampler.start()
    asyncio.run(land_round(found, batch, size, pid))
    sampler.join()
    title = f"imagedock worker landing {name} images, the thread holding the GIL"
    return profiles.markdown(title, box["stacks"])  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
