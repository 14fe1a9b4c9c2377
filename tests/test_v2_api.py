"""Apiframe's own API, served by imagedock: its routes, bodies, status codes and error shape,
each caller's jobs its own, and every output landed in the bucket before a job is COMPLETED."""

import uuid

import httpx

from tests.support.stack import CALLER_KEYS, Stack


def caller(stack: Stack, name: str = "alpha") -> httpx.AsyncClient:
    """An Apiframe client of imagedock, as the product page's quick start makes one."""
    return httpx.AsyncClient(base_url=stack.receiver_url, headers={"X-API-Key": CALLER_KEYS[name]})


async def test_a_job_submitted_through_v2_lands_before_it_is_completed(stack: Stack) -> None:
    stack.sim.config.images_per_job = 2
    async with caller(stack) as alpha:
        answer = await alpha.post(
            "/v2/images/generate",
            json={
                "model": "grok-imagine-image",
                "prompt": "a fox",
                "grokImagineParams": {"aspect_ratio": "1:1"},
            },
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["jobId"]
        assert uuid.UUID(job_id).version == 4
        seen = (await alpha.get(f"/v2/jobs/{job_id}")).json()
        assert seen["status"] in ("QUEUED", "PROCESSING")
        await stack.run_worker()
        job = (await alpha.get(f"/v2/jobs/{job_id}")).json()
        print(job)
        assert job["status"] == "COMPLETED"
        apiframe_id = (await stack.job(uuid.UUID(job_id).hex))["jobId"]
        served = stack.sim.jobs[apiframe_id].image_urls
        for url, source in zip(job["result"]["images"], served, strict=True):
            got = await alpha.get(url)
            assert got.content == stack.sim.image(source).read()
