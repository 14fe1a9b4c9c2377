"""Every metric is declared once in `worker.metrics` and incremented through its declaration: a
counter no code path increments, or an increment naming a counter nobody declared, fails here."""

import ast
import re
import uuid
from pathlib import Path

from tests.support.ledger import counters
from tests.support.stack import Stack
from worker import metrics

ROOT = Path(__file__).parent.parent
# Where metrics are declared and rendered: naming one there is not incrementing it.
NOT_INCREMENTS = {ROOT / "worker" / "metrics.py", ROOT / "receiver" / "metrics.py"}
LUA_COUNTER = re.compile(r"\bc\.counters\.(\w+)")


def python_uses() -> dict[str, list[str]]:
    """Each name taken from `worker.metrics` by production code, with where."""
    found: dict[str, list[str]] = {}
    for package in ("worker", "receiver", "imagedock"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path in NOT_INCREMENTS:
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                name = None
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    name = node.attr if node.value.id == "metrics" else None
                elif isinstance(node, ast.ImportFrom) and node.module == "worker.metrics":
                    for alias in node.names:
                        found.setdefault(alias.name, []).append(str(path.relative_to(ROOT)))
                if name is not None:
                    found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def lua_uses() -> dict[str, list[str]]:
    """Each counter a Lua script increments (`c.counters.<name>`), with where."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "worker").rglob("*.lua")):
        for name in LUA_COUNTER.findall(path.read_text()):
            found.setdefault(name, []).append(path.name)
    return found


def declared_names() -> dict[str, object]:
    return {name: value for name, value in vars(metrics).items() if name.isupper()}


def test_every_name_taken_from_the_declarations_is_declared() -> None:
    """A misspelt counter at its increment, in Python or in Lua, names nothing declared."""
    unknown = {name: where for name, where in python_uses().items() if name not in vars(metrics)}
    assert unknown == {}
    fields = metrics.script_fields()
    assert {name: where for name, where in lua_uses().items() if name not in fields} == {}


def test_every_declared_counter_and_histogram_is_incremented_somewhere() -> None:
    """Each declared counter and histogram has at least one increment in production code."""
    python, lua = python_uses(), lua_uses()
    by_value = {id(value): name for name, value in declared_names().items()}
    never = [
        declared.name
        for declared in (*metrics.COUNTERS, *metrics.HISTOGRAMS)
        if by_value[id(declared)] not in python and declared.name not in lua
    ]
    assert never == []


async def test_every_counter_in_redis_is_a_declared_one(stack: Stack) -> None:
    """After a landed job, a failed one and a refused webhook, every field of the counters'
    hash belongs to a declared counter."""
    await stack.submit()
    await stack.run_worker()
    stack.sim.config.failure_rate = 1.0
    await stack.submit()
    await stack.run_worker()
    refused = {"jobId": str(uuid.uuid4()), "status": "QUEUED"}
    await stack.api.post("/webhooks/apiframe", json=refused)
    fields = await counters(stack.redis)
    assert len(fields) >= 5

    def declared(field: str) -> bool:
        return any(
            field == counter.field if counter.label is None else field.startswith(counter.field)
            for counter in metrics.COUNTERS
        )

    assert [field for field in fields if not declared(field)] == []
