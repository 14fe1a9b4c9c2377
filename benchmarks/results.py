"""What a benchmark reports: rows of figure, reference and ratio against a target, with notes and
the details (rounds, profiles) that explain them; saved as JSON for `benchmarks.report`."""

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worker.structured_logging import configure_logging


@dataclass
class Row:
    figure: str  # what was measured, e.g. "requests/s"
    value: str
    reference: str  # what it is measured against, in the same run
    reference_value: str
    ratio: str
    target: str
    met: bool | None  # None: no target


@dataclass
class Result:
    name: str
    title: str
    command: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one paragraph each
    details: list[str] = field(default_factory=list)  # markdown blocks: rounds, profiles
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    loadavg: list[float] = field(default_factory=list)  # 1-minute load at start and end

    def finish(self, out: Path | None) -> None:
        self.seconds = time.time() - self.started
        self.loadavg = [self.loadavg[0] if self.loadavg else 0.0, os.getloadavg()[0]]
        if out is not None:
            out.write_text(json.dumps(asdict(self), indent=2))

    def begin(self) -> None:
        self.started = time.time()
        self.loadavg = [os.getloadavg()[0]]


def begin(name: str, title: str, module: str = "") -> tuple[argparse.Namespace, Result]:
    """A benchmark's start: its command line (`--out FILE`, `--quick`), quiet logging, and its
    result (named `name`, run as `benchmarks.<module or name>`), the clock and load taken."""
    command = f"python -m benchmarks.{module or name}"
    parser = argparse.ArgumentParser(prog=command)
    parser.add_argument("--out", type=Path, help="where to write the result as JSON")
    parser.add_argument("--quick", action="store_true", help="short rounds, to try the harness")
    args = parser.parse_args()
    configure_logging("WARNING")
    result = Result(name, title, command)
    result.begin()
    return args, result


def load(path: Path) -> Result:
    raw: dict[str, Any] = json.loads(path.read_text())
    rows = [Row(**row) for row in raw.pop("rows")]
    return Result(rows=rows, **raw)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}" if reference else "n/a"


def say(*parts: object) -> None:
    """Progress, on stderr: stdout is left to the figures."""
    print(*parts, file=sys.stderr, flush=True)


def table(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
