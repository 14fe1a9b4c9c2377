"""Apiframe's job list, which imagedock never reads, read as its clients would."""

import httpx

from tests.support.stack import API_KEY
from worker.apiframe.models import JobList


async def list_jobs(base_url: str, **query: str | int) -> JobList:
    """`GET /v2/jobs` with `query`, read as Apiframe's `{jobs, nextCursor, hasMore}`."""
    async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": API_KEY}) as http:
        answer = await http.get("/v2/jobs", params=query)
    answer.raise_for_status()
    return JobList.model_validate_json(answer.content)
