"""The ledger's Lua scripts, read from `lua/`: one file a script, and the pieces several share
(the move, the log entry, arq's enqueue) written once.

A file names the pieces it needs on a `-- uses: a, b` line; `source` writes each piece once,
before whatever uses it. Every script is read once per process.
"""

import functools
import re
from pathlib import Path

LUA = Path(__file__).parent / "lua"
USES = re.compile(r"^-- uses: (.+)$", re.MULTILINE)


def pieces_of(text: str) -> list[str]:
    return [name.strip() for line in USES.findall(text) for name in line.split(",")]


@functools.cache
def source(name: str) -> str:
    """The script `name`, with every piece it uses, and theirs, written before it once."""
    ordered: list[str] = []

    def add(piece: str) -> None:
        if piece in ordered:
            return
        for needed in pieces_of(read(piece)):
            add(needed)
        ordered.append(piece)

    for piece in pieces_of(read(name)):
        add(piece)
    return "\n".join([*(read(piece) for piece in ordered), read(name)])


@functools.cache
def read(name: str) -> str:
    return (LUA / f"{name}.lua").read_text()
