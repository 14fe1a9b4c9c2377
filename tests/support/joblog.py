"""A job's log as the API answers it, every entry with its detail (`Stack.log_events` gives
the event names alone)."""

from typing import Any

from tests.support.stack import Stack


async def entries(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    answer = await stack.api.get(f"/jobs/{job_id}/log")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["entries"]
    return found
