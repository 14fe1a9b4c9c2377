"""Where a running process spends its time: py-spy samples it from outside (no change to the
process, a few per cent of one core), and the samples are summed by function and by package."""

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.results import table

# Frames are named "function (path:line)"; a package is the first path part recognised here.
PACKAGES = (
    "receiver",
    "worker",
    "imagedock",
    "benchmarks",
    "simulator",
    "starlette",
    "uvicorn",
    "httptools",
    "uvloop",
    "redis",
    "hiredis",
    "arq",
    "pydantic",
    "pydantic_core",
    "structlog",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "json",
    "asyncio",
    "logging",
    "hmac",
    "hashlib",
    "ssl",
    "concurrent",
    "threading",
    "tempfile",
)
PROJECT = frozenset({"receiver", "worker", "imagedock", "benchmarks", "simulator"})


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is missing: pip install py-spy")
    return found


def record(
    pid: int, seconds: float, *, rate: int = 100, subprocesses: bool = False, gil: bool = False
) -> Counter[str]:
    """Sample `pid` for `seconds`; collapsed stacks (root first, ';'-joined) and their counts.
    With `gil`, only the thread holding the GIL is sampled: Python's own CPU time, without the
    idle threads of a pool waiting for work."""
    out = Path(tempfile.mkdtemp(prefix="imagedock-bench-pyspy-")) / "stacks.txt"
    args = [py_spy(), "record", "--pid", str(pid), "--duration", str(round(seconds))]
    args += ["--rate", str(rate), "--format", "raw", "--output", str(out)]
    if subprocesses:
        args.append("--subprocesses")
    if gil:
        args.append("--gil")
    subprocess.run(args, check=True, capture_output=True)  # noqa: S603
    stacks: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    shutil.rmtree(out.parent, ignore_errors=True)
    return stacks


def package_of(frame: str) -> str:
    _, _, where = frame.rpartition(" (")
    path = where.split(":")[0]
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    for part in parts:
        name = part.removesuffix(".py")
        if name in PACKAGES:
            return name
    return "other"


def function_of(frame: str) -> str:
    name, _, where = frame.rpartition(" (")
    path = where.split(":")[0]
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def summary(stacks: Counter[str], *, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Shares of samples: by package where the sample was taken (self), by function that was on
    the stack (inclusive) and by function that was running (self)."""
    total = sum(stacks.values()) or 1
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [f for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        leaf = frames[-1]
        by_package[package_of(leaf)] += count
        own[function_of(leaf)] += count
        # imagedock's own functions, and each call they make into a library (redis-py's
        # EVALSHA, json.dumps, pydantic), with everything below them.
        named = set()
        for n, frame in enumerate(frames):
            if package_of(frame) in PROJECT:
                named.add(function_of(frame))
                if n + 1 < len(frames) and package_of(frames[n + 1]) not in PROJECT:
                    named.add(function_of(frames[n + 1]))
        for name in named:
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, 100 * v / total) for k, v in counter.most_common(top)]

    # The frames every sample shares (the process's entry, the event loop's run) say nothing.
    below_root = Counter({k: v for k, v in inclusive.items() if v < 0.95 * total})
    return {
        "package": share(by_package),
        "inclusive": share(below_root),
        "self": share(own),
        "samples": [("samples", float(total))],
    }


def markdown(
    title: str, stacks: Counter[str], *, top: int = 20, cpu_ms: float | None = None
) -> str:
    """A profile as three small tables; with `cpu_ms`, the process's CPU time per request, each
    share is also shown as microseconds of CPU per request."""
    found = summary(stacks, top=top)
    samples = int(found["samples"][0][1])
    parts = [f"**{title}** ({samples} samples while busy, py-spy at 100 Hz)", ""]

    def rows(shares: list[tuple[str, float]], code: bool = True) -> list[tuple[str, ...]]:
        shown: list[tuple[str, ...]] = [(f"`{k}`" if code else k, f"{v:.1f}") for k, v in shares]
        if cpu_ms is None:
            return shown
        return [(k, v, f"{float(v) * cpu_ms * 10:.0f}") for k, v in shown]

    extra = [] if cpu_ms is None else ["µs/request"]
    parts.append(table(["package (self time)", "%", *extra], rows(found["package"], code=False)))
    parts.append("")
    header = "imagedock's functions and the library calls they make, with what those call"
    parts.append(table([header, "%", *extra], rows(found["inclusive"])))
    parts.append("")
    parts.append(table(["function (self time)", "%", *extra], rows(found["self"])))
    return "\n".join(parts)
