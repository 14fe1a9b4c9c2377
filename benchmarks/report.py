"""BENCHMARKS.md, written from the benchmarks' results: the machine, the command, the date, and
for each benchmark a table of figure, reference, ratio, target and whether it was met."""

import os
import platform
import subprocess
import time
from pathlib import Path

from benchmarks.findings import explain
from benchmarks.results import Result, load, table

INTRO = """\
# Benchmarks

Every figure here is measured against a reference measured in the same run, on the same machine,
in alternating rounds (the order reversed every other round); figures are medians over the
rounds. Nothing here is a test: the test suite asserts what happens, never how fast.

**The figures come from a shared 2-core machine**: other people's test runs and builds used the
same cores during the run (the load average at each benchmark's start and end is shown), so
absolute figures move from run to run; the ratios against the same-run references move less.
Regenerate this file with `scripts/bench` (it installs wrk and nginx from Debian when missing,
starts its own Redis, SeaweedFS and simulator, and writes this file).
"""


def machine() -> list[tuple[str, str]]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    version = ["redis-server", "--version"]
    redis = subprocess.run(version, capture_output=True, text=True, check=False)  # noqa: S603
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S607
    return [
        ("cores (nproc)", str(len(os.sched_getaffinity(0)))),
        ("CPU model", model),
        ("memory", f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"),
        ("Python", platform.python_version()),
        ("Redis", redis.stdout.split()[2].removeprefix("v=") if redis.stdout else "?"),
        ("wrk", (wrk.stdout or wrk.stderr).split("[")[0].strip()),
        ("kernel", platform.release()),
    ]


def when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(moment))


def mark(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "—"}[met]


def render(
    results: list[Result],
    failures: list[tuple[str, str]],
    command: str,
    started: float,
    *,
    took: float | None = None,
) -> str:
    parts = [INTRO]
    parts.append(
        table(
            ["", ""],
            [
                ("command", f"`{command}`"),
                ("date", when(started)),
                ("took", f"{(took or time.time() - started) / 60:.1f} minutes"),
                *machine(),
            ],
        )
    )
    parts.append("")
    parts.append(
        "A summary; each benchmark's own section below has its rounds, notes and profiles.\n"
    )
    summary = []
    for result in results:
        for row in result.rows:
            if row.met is not None:
                summary.append((result.title, row.figure, row.value, row.reference_value, row.ratio,
                                row.target, mark(row.met)))  # fmt: skip
    parts.append(
        table(["benchmark", "figure", "value", "reference", "ratio", "target", ""], summary)
    )
    for name, error in failures:
        parts.append(f"\n**{name} failed in this run**:\n\n```\n{error.strip()[-3000:]}\n```")
    for result in results:
        parts.append(f"\n## {result.title}\n")
        parts.append(
            f"`{result.command}` (in `scripts/bench`), {when(result.started)}, "
            f"{result.seconds:.0f} s; load average {result.loadavg[0]:.2f} at the start, "
            f"{result.loadavg[-1]:.2f} at the end.\n"
        )
        parts.append(
            table(
                ["figure", "value", "reference", "reference value", "ratio", "target", ""],
                [
                    (
                        row.figure,
                        row.value,
                        row.reference,
                        row.reference_value,
                        row.ratio,
                        row.target or "—",
                        mark(row.met),
                    )
                    for row in result.rows
                ],
            )
        )
        for note in [*result.notes, *explain(result)]:
            parts.append("\n" + note)
        for block in result.details:
            parts.append("\n" + block)
    return "\n".join(parts).rstrip() + "\n"


def main() -> None:
    """`python -m benchmarks.report DIR`: BENCHMARKS.md again from the results saved in DIR (the
    text changed, not the figures)."""
    import sys

    directory = Path(sys.argv[1])
    order = ["webhooks", "landing", "memory", "poller", "end_to_end", "redis_cost"]
    found = sorted(
        (load(path) for path in directory.glob("*.json")),
        key=lambda result: order.index(result.name) if result.name in order else len(order),
    )
    started = min(result.started for result in found)
    took = sum(result.seconds for result in found)
    text = render(found, [], "scripts/bench, then sections re-run one by one", started, took=took)
    (Path(__file__).resolve().parent.parent / "BENCHMARKS.md").write_text(text)


if __name__ == "__main__":
    main()
