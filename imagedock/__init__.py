"""imagedock's composition root: the `imagedock` command, the ops commands, and `open_deps`, the
one place a process's clients are made.

Imports point one way: `imagedock` -> `receiver` (HTTP) -> `worker` (the domain and arq). The
simulator, the demo and the local servers live in `simulator`, an optional extra that nothing
here imports until its command is run.
"""
