"""Apiframe's v2 contract as it publishes it (../shared/APIFRAME.md, facts marked confirmed),
checked against the simulator, or against any URL: set IMAGEDOCK_CONTRACT_URL and
IMAGEDOCK_CONTRACT_KEY (and IMAGEDOCK_CONTRACT_OTHER_KEY for the scoping checks) to point the
same tests at the real Apiframe. Against it, the submitting tests bill a few jobs."""

import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from simulator import Simulator
from simulator.serving import serving
from tests.support.stack import API_KEY, fast_config

GENERATE = "/v2/images/generate"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Target:
    api: httpx.AsyncClient
    other: httpx.AsyncClient | None  # a client with another user's key, if there is one


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    url, key = os.environ.get("IMAGEDOCK_CONTRACT_URL"), os.environ.get("IMAGEDOCK_CONTRACT_KEY")
    other_key = os.environ.get("IMAGEDOCK_CONTRACT_OTHER_KEY")
    if url and key:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as api:
            if other_key is None:
                yield Target(api, None)
                return
            headers = {"X-API-Key": other_key}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as other:
                yield Target(api, other)
        return
    simulator = Simulator(fast_config())
    async with serving(simulator.app) as served:
        async with (
            httpx.AsyncClient(base_url=served, headers={"X-API-Key": API_KEY}) as api,
            httpx.AsyncClient(base_url=served, headers={"X-API-Key": "afk_another_user"}) as other,
        ):
            yield Target(api, other)
        await simulator.settle()


def body(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a contract test: one small grey square", "model": "flux-2-pro", **fields}


async def test_a_key_is_required(target: Target) -> None:
    """No key, or one that is not a key, is a 401 with an `error` message."""
    for key in ("", "not-a-key"):
        answer = await target.api.post(GENERATE, json=body(), headers={"X-API-Key": key})
        assert answer.status_code == 401
        assert isinstance(answer.json()["error"], str)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"model": None}, "model"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({"grokImagineParams": {"aspect_ratio": "1:1"}}, ""),  # another model's block
        ({"colour": "red"}, ""),
        ({"webhookEvents": []}, "webhookEvents"),
    ],
)
async def test_a_bad_body_is_a_400_with_details(
    target: Target, fields: dict[str, Any], path: str
) -> None:
    """Strict bodies: every problem is a 400, `{error, details}`, naming the field."""
    sent = {k: v for k, v in body(**fields).items() if v is not None}
    answer = await target.api.post(GENERATE, json=sent)
    assert answer.status_code == 400
    problem = answer.json()
    assert isinstance(problem["error"], str)
    assert path in problem["details"]


async def test_a_submission_is_a_202_and_a_job(target: Target) -> None:
    """`202 {jobId, status: QUEUED}`, and the job reads back in the published shape."""
    answer = await target.api.post(GENERATE, json=body(fluxParams={}))
    assert answer.status_code == 202
    accepted = answer.json()
    assert UUID.match(accepted["jobId"])
    assert accepted["status"] == "QUEUED"
    job = (await target.api.get(f"/v2/jobs/{accepted['jobId']}")).json()
    assert job["id"] == accepted["jobId"]
    assert job["model"] == "flux-2-pro"
    assert job["status"] in ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")
    for field in ("progress", "result", "error", "creditCost", "webhookStatus", "createdAt"):
        assert field in job
    assert job["expired"] is False


async def test_an_idempotency_key_replays_and_guards_its_body(target: Target) -> None:
    """The same key and body give the same job; another body under it is a 409."""
    key = {"Idempotency-Key": f"contract-{uuid.uuid4()}"}
    first = await target.api.post(GENERATE, json=body(), headers=key)
    again = await target.api.post(GENERATE, json=body(), headers=key)
    other = await target.api.post(GENERATE, json=body(prompt="another body"), headers=key)
    assert (first.status_code, again.status_code, other.status_code) == (202, 202, 409)
    assert again.json()["jobId"] == first.json()["jobId"]


async def test_jobs_belong_to_the_key_that_made_them(target: Target) -> None:
    """Another user's key gets 404 for the job, and a new job for the same Idempotency-Key."""
    if target.other is None:
        pytest.skip("IMAGEDOCK_CONTRACT_OTHER_KEY is not set")
    key = {"Idempotency-Key": f"contract-{uuid.uuid4()}"}
    mine = (await target.api.post(GENERATE, json=body(), headers=key)).json()["jobId"]
    assert (await target.other.get(f"/v2/jobs/{mine}")).status_code == 404
    theirs = await target.other.post(GENERATE, json=body(), headers=key)
    assert theirs.status_code == 202
    assert theirs.json()["jobId"] != mine
    listed = (await target.other.get("/v2/jobs", params={"limit": 100})).json()["jobs"]
    assert mine not in {job["id"] for job in listed}


@pytest.mark.parametrize("job_id", ["not-a-uuid", str(uuid.uuid4())])
async def test_a_job_that_is_not_there(target: Target, job_id: str) -> None:
    answer = await target.api.get(f"/v2/jobs/{job_id}")
    assert answer.status_code == (404 if UUID.match(job_id) else 400)


@pytest.mark.parametrize(
    "query",
    [{"status": "DONE"}, {"limit": 0}, {"limit": 101}, {"scope": "everyone"}, {"cursor": "%%%"}],
)
async def test_a_bad_job_list_query_is_a_400(target: Target, query: dict[str, Any]) -> None:
    assert (await target.api.get("/v2/jobs", params=query)).status_code == 400


async def test_the_job_list_pages_newest_first(target: Target) -> None:
    answer = (await target.api.get("/v2/jobs", params={"limit": 1})).json()
    assert set(answer) >= {"jobs", "nextCursor", "hasMore"}
    assert len(answer["jobs"]) <= 1


async def test_me_has_the_published_shape(target: Target) -> None:
    me = (await target.api.get("/v2/me")).json()
    assert UUID.match(me["user"]["id"])
    assert {"email", "role"} <= set(me["user"])
    if me["team"] is not None:
        assert UUID.match(me["team"]["id"])
        assert {"name", "credits", "plan", "customerId"} <= set(me["team"])
    if me["apiKey"] is not None:
        assert {"id", "name", "prefix"} <= set(me["apiKey"])
