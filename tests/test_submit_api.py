"""imagedock's own API: submitting, idempotency, Apiframe's errors, and access."""

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from tests.support.ledger import recent
from tests.support.stack import Stack


async def test_requires_the_bearer_token(stack: Stack) -> None:
    """Every API route but the health check and the webhook refuses a missing or wrong token."""
    async with httpx.AsyncClient(base_url=stack.receiver_url) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            response = await anonymous.post("/jobs", json={"prompt": "x"}, headers=headers)
            assert response.status_code == 401
            assert (await anonymous.get("/jobs", headers=headers)).status_code == 401
            assert (await anonymous.get("/log", headers=headers)).status_code == 401
        assert (await anonymous.get("/healthz")).status_code == 200
    assert stack.sim.submissions() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "grokParams": {"aspect_ratio": "5:4"}}, "aspect_ratio"),
        ({"prompt": "x", "metadata": {"k": 3}}, "metadata"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"prompt": "x", "webhookUrl": "https://elsewhere.example"}, "webhook"),
    ],
)
async def test_bad_requests_name_the_problem(
    stack: Stack, body: dict[str, object], field: str
) -> None:
    """An invalid request is a 400 naming the field, and nothing reaches Apiframe."""
    response = await stack.api.post("/jobs", json=body)
    assert response.status_code == 400
    assert field in response.text
    assert stack.sim.submissions() == []
    assert await recent(stack.ledger) == []


async def test_a_callers_idempotency_key_returns_the_same_job(stack: Stack) -> None:
    """Repeating a request with its Idempotency-Key returns the first job; another body is 409."""
    headers = {"Idempotency-Key": "order-42"}
    first = await stack.api.post("/jobs", json={"prompt": "a fox"}, headers=headers)
    again = await stack.api.post("/jobs", json={"prompt": "a fox"}, headers=headers)
    other = await stack.api.post("/jobs", json={"prompt": "a hen"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["ref"] == again.json()["ref"]
    assert other.status_code == 409
    await stack.all_sent()
    assert len(stack.sim.jobs) == 1


async def test_a_lost_submit_is_sent_again_without_billing_twice(stack: Stack) -> None:
    """Apiframe unavailable twice: the job waits and is sent again with its ref's key, which
    the caller never sees fail; one job results."""
    stack.sim.fail_next(503, times=2, path="/v2/images/generate")
    accepted = await stack.api.post("/jobs", json={"prompt": "x"}, headers={"Idempotency-Key": "k"})
    assert accepted.status_code == 202
    submitted = await stack.submitted(accepted.json()["ref"])
    assert submitted["jobId"] is not None
    assert [r.status for r in stack.sim.submissions()] == [503, 503, 202]
    keys = {r.headers["idempotency-key"] for r in stack.sim.submissions()}
    assert len(keys) == 1
    assert len(stack.sim.jobs) == 1


async def test_listing_and_logs(stack: Stack) -> None:
    """Jobs list newest first; the global log follows with `after`."""
    first = await stack.submit("one")
    second = await stack.submit("two")
    listed = (await stack.api.get("/jobs", params={"limit": "10"})).json()["jobs"]
    assert [job["jobId"] for job in listed] == [second["jobId"], first["jobId"]]
    await stack.sim.settle()  # no webhook may add an entry between the two reads
    entries = (await stack.api.get("/log")).json()["entries"]
    later = (await stack.api.get("/log", params={"after": entries[1]["id"]})).json()["entries"]
    assert later == entries[2:]
    assert (await stack.api.get("/jobs/nope")).status_code == 404


async def test_the_ops_commands_read_the_ledger(stack: Stack) -> None:
    """`imagedock jobs`, `status` and `tail` show a landed job from the ledger."""
    job_id = (await stack.submit("a quiet harbour"))["jobId"]
    await stack.run_worker()
    env = {**os.environ, "IMAGEDOCK_REDIS_URL": stack.settings.redis_url, "COLUMNS": "200"}
    for args, expected in (
        (["jobs"], "LANDED"),
        (["status", job_id], '"status": "LANDED"'),
        (["tail", "-n", "5"], "event.delivered"),
    ):
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "imagedock.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout
        assert job_id[:8] in result.stdout
