"""`python -m benchmarks [--quick] [NAME ...]`: each benchmark in turn, one at a time (the machine's
cores are shared), each in a process of its own; then BENCHMARKS.md is written from the results."""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import render
from benchmarks.results import Result, load, say

# In this order: the slow set-ups last, so a quick look at the first ones comes early.
BENCHMARKS = (
    "webhooks",
    "live_streams",
    "landing",
    "landing_memory",
    "large_video",
    "poller",
    "end_to_end",
    "redis_cost",
    "submit_queue",
)
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="short rounds: to try the harness")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
    names = args.names or list(BENCHMARKS)
    started = time.time()
    directory = Path(tempfile.mkdtemp(prefix="imagedock-bench-"))
    results: list[Result] = []
    failures: list[tuple[str, str]] = []
    for name in names:
        say(f"== {name}")
        out = directory / f"{name}.json"
        command = [sys.executable, "-m", f"benchmarks.{name}", "--out", str(out)]
        if args.quick:
            command.append("--quick")
        # Progress shows as it comes; the end of it is kept to report a failure.
        process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)  # noqa: S603
        assert process.stderr is not None
        said: list[str] = []
        for line in process.stderr:
            sys.stderr.write(line)
            said = [*said[-200:], line]
        if process.wait() == 0 and out.exists():
            results.append(load(out))
        else:
            failures.append((name, "".join(said)))
    invoked = "scripts/bench" + (" --quick" if args.quick else "")
    invoked += "".join(f" {name}" for name in args.names)
    args.output.write_text(render(results, failures, invoked, started))
    say(f"wrote {args.output} in {(time.time() - started) / 60:.1f} minutes")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
