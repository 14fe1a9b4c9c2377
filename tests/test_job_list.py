"""`GET /jobs`: newest first, filtered by status, model, time and text, paged by an opaque
cursor, each page one Redis command; `?presign=` hands out short-lived URLs for the objects."""

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.support.monitor import monitoring
from tests.support.stack import Stack
from worker.ledger.keys import BY_MODEL, BY_STATUS, BY_TIME
from worker.ledger.ledger import Ledger
from worker.ledger.paging import CALL_BUDGET
from worker.ledger.records import JobRecord
from worker.status import Status

MODELS = ("grok-imagine-image", "flux-pro", "seedream-4")
ENDINGS = (Status.LANDED, Status.FAILED, Status.QUEUED, Status.LANDED, Status.TIMED_OUT)


async def make_jobs(ledger: Ledger, count: int) -> list[JobRecord]:
    """`count` records over three models and five statuses; one in seven mentions a lighthouse.
    Fifty share one creation time, as records made within a clock tick do."""
    made = []
    for n in range(count):
        prompt = f"job {n}: " + ("a lighthouse at dawn" if n % 7 == 0 else "a kite over dunes")
        record, _ = await ledger.create(prompt=prompt, model=MODELS[n % 3])
        if ENDINGS[n % 5] != Status.SUBMITTING:
            await ledger.transition(record.ref, ENDINGS[n % 5], "test")
        made.append(record)
    tied = time.time() - 5
    for record in made[100:150]:
        for index in (
            BY_TIME,
            BY_STATUS + ENDINGS[made.index(record) % 5],
            BY_MODEL + record.model,
        ):
            await ledger.redis.zadd(index, {record.ref: tied}, xx=True)
        await ledger.set_fields(record.ref, created_at=tied)
    return made


async def every_page(api: httpx.AsyncClient, **query: Any) -> tuple[list[str], int]:
    """The refs of every page, in order, and how many pages it took."""
    refs: list[str] = []
    pages, cursor = 0, None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        answer = await api.get("/jobs", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        refs += [job["ref"] for job in page["jobs"]]
        pages += 1
        assert page["hasMore"] == (page["nextCursor"] is not None)
        if not page["hasMore"]:
            return refs, pages
        cursor = page["nextCursor"]


def newest_first(records: list[JobRecord], ledger_scores: dict[str, float]) -> list[str]:
    """Refs by creation time, newest first; ties in reverse ref order, as Redis keeps them."""
    ordered = sorted(records, key=lambda r: (ledger_scores[r.ref], r.ref), reverse=True)
    return [record.ref for record in ordered]


async def test_paging_through_a_thousand_jobs_with_filters(stack: Stack) -> None:
    """Every filter, paged 37 at a time, yields exactly the matching jobs, newest first, each
    once, including fifty that share one creation time."""
    made = await make_jobs(stack.ledger, 1000)
    scores = {
        (ref.decode() if isinstance(ref, bytes) else ref): score
        for ref, score in await stack.redis.zrange(BY_TIME, 0, -1, withscores=True)
    }
    assert len(set(scores.values())) == 1000 - 49  # the tie is really there
    status_of = {record.ref: ENDINGS[n % 5] for n, record in enumerate(made)}
    # The API reads times to the microsecond: the boundary is one, sent as ISO 8601.
    middle = datetime.fromtimestamp(sorted(scores.values())[500], UTC).replace(microsecond=0)
    boundary = middle.timestamp()
    cases: list[tuple[dict[str, Any], list[JobRecord]]] = [
        ({}, made),
        ({"status": "LANDED"}, [r for r in made if status_of[r.ref] == Status.LANDED]),
        ({"model": "flux-pro"}, [r for r in made if r.model == "flux-pro"]),
        (
            {"status": "FAILED", "model": "seedream-4"},
            [r for r in made if status_of[r.ref] == Status.FAILED and r.model == "seedream-4"],
        ),
        ({"q": "LIGHTHOUSE"}, [r for r in made if "lighthouse" in r.prompt]),
        ({"since": middle.isoformat()}, [r for r in made if scores[r.ref] >= boundary]),
        ({"until": int(boundary), "model": "grok-imagine-image"},
         [r for r in made if scores[r.ref] <= boundary and r.model == "grok-imagine-image"]),
        ({"since": f"{boundary:e}"}, [r for r in made if scores[r.ref] >= float(f"{boundary:e}")]),
        ({"until": "-5e-324"}, []),  # a number in any notation is Unix time
    ]  # fmt: skip
    by_status = (await stack.api.get("/stats")).json()["byStatus"]
    assert by_status == {status: list(status_of.values()).count(status) for status in Status}
    for query, expected in cases:
        refs, pages = await every_page(stack.api, limit=37, **query)
        assert refs == newest_first(expected, scores), query
        assert pages == max(1, -(-len(expected) // 37)), query


async def test_a_page_is_one_redis_command(stack: Stack) -> None:
    """However many records a filtered page passes over, the receiver sends Redis one command
    for it (the page script); the rest runs inside Redis."""
    await make_jobs(stack.ledger, 200)
    async with monitoring(stack) as seen:
        answer = await stack.api.get("/jobs", params={"status": "FAILED", "q": "lighthouse"})
        assert answer.status_code == 200
        assert answer.json()["jobs"]
    assert [command[0].lower() for command in seen] == ["evalsha"]


async def test_a_long_search_is_several_short_script_calls(stack: Stack) -> None:
    """A page that passes over more records than one call may sends a call per `CALL_BUDGET`
    records, so Redis serves everyone else between them; the answer is the same."""
    await make_jobs(stack.ledger, 2 * CALL_BUDGET + 100)
    async with monitoring(stack) as seen:
        answer = await stack.api.get("/jobs", params={"q": "no record says this"})
        assert answer.status_code == 200
        assert (answer.json()["jobs"], answer.json()["hasMore"]) == ([], False)
    assert [command[0].lower() for command in seen] == ["evalsha"] * 3


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "DONE"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"presign": "0"}, "presign"),
        ({"colour": "red"}, "colour"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_a_bad_query_is_refused_naming_the_parameter(
    stack: Stack, params: dict[str, str], named: str
) -> None:
    """An unknown parameter or a bad value answers 400 naming it, rather than being ignored."""
    answer = await stack.api.get("/jobs", params=params)
    assert answer.status_code == 400
    assert named in answer.json()["details"]


async def test_presigned_urls_fetch_the_landed_images(stack: Stack) -> None:
    """With `?presign=`, each object carries a URL that fetches it from S3 without credentials;
    without it, none. The URLs are never logged."""
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    plain = await stack.job(job_id)
    assert plain["objects"]
    assert all("url" not in stored for stored in plain["objects"])
    with capture_logs() as logs:
        job = (await stack.api.get(f"/jobs/{job_id}", params={"presign": 60})).json()
        listed = (await stack.api.get("/jobs", params={"presign": 60})).json()["jobs"]
    [stored] = job["objects"]
    assert "X-Amz-Signature=" in stored["url"]
    assert "X-Amz-Expires=60" in stored["url"]
    assert listed[0]["objects"][0]["url"].split("?")[0] == stored["url"].split("?")[0]
    async with httpx.AsyncClient() as anonymous:
        fetched = await anonymous.get(stored["url"])
    assert fetched.status_code == 200
    assert fetched.content == stack.object(stored["key"])
    assert "X-Amz-Signature" not in repr(logs)


async def test_retention_trims_every_index(stack: Stack) -> None:
    """The status and model indexes forget a record with the time index."""
    [record] = await make_jobs(stack.ledger, 1)
    old = time.time() - 1000
    for index in (BY_TIME, BY_STATUS + "LANDED", BY_MODEL + record.model):
        await stack.redis.zadd(index, {record.ref: old}, xx=True)
    stack.deps.ledger.retention = 500
    await stack.poll()
    for index in (BY_TIME, BY_STATUS + "LANDED", BY_MODEL + record.model):
        assert await stack.redis.zcard(index) == 0, index
