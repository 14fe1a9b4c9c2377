"""What tests share: constants, the stack they drive, servers they start, and readers of state
that production code has no use for. Test modules import from here, never from each other."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: where the processes run
