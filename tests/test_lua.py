"""The ledger's Lua: a file a script, shared pieces written once, every key named in one place."""

import re
from pathlib import Path

from worker.deps import Deps
from worker.ledger.scripts import LUA, source

ROOT = Path(__file__).parent.parent
SHIPPED = ("worker", "receiver", "imagedock", "simulator")
PIECES = {path.stem for path in LUA.glob("*.lua") if path.read_text().startswith("-- A piece")}
SCRIPTS = sorted(path.stem for path in LUA.glob("*.lua") if path.stem not in PIECES)


def shipped_files(suffix: str) -> list[Path]:
    return [path for package in SHIPPED for path in sorted((ROOT / package).rglob(suffix))]


def test_no_lua_is_held_in_a_python_string() -> None:
    """No shipped Python holds Lua text of its own."""
    held = [str(p) for p in shipped_files("*.py") if "redis.call(" in p.read_text()]
    assert held == []


def test_every_key_name_is_spelt_in_the_keys_module() -> None:
    """No shipped file but `worker/ledger/keys.py` spells imagedock's key prefix."""
    keys_module = ROOT / "worker" / "ledger" / "keys.py"
    spelt = [
        str(path.relative_to(ROOT))
        for path in (*shipped_files("*.py"), *shipped_files("*.lua"))
        if path != keys_module and re.search(r"['\"]imagedock:[\w{]", path.read_text())
    ]
    assert spelt == []


def test_a_script_documents_its_keys_and_arguments() -> None:
    """Every script (not a piece) says at its top what KEYS and ARGV hold."""
    for name in SCRIPTS:
        head = (LUA / f"{name}.lua").read_text().split("\n\n")[0]
        assert "-- KEYS:" in head, name
        assert "ARGV" in head, name


def test_a_piece_is_written_once_before_what_uses_it() -> None:
    """The webhook script carries the move, the log entry and the enqueue once each, each
    defined before its first use."""
    webhook = source("webhook")
    for function in ("append_log", "move", "enqueue"):
        assert webhook.count(f"local function {function}(") == 1, function
    assert webhook.index("local function append_log(") < webhook.index("local function move(")
    assert webhook.index("local function move(") < webhook.index("move(ref, status")


async def test_every_script_compiles_in_redis(deps: Deps) -> None:
    """Redis accepts each script as `source` assembles it."""
    for name in SCRIPTS:
        assert len(await deps.redis.script_load(source(name))) == 40, name
