"""Redis holds a bounded amount whatever happens: finished jobs expire, indexes are trimmed with
them, dead letters are capped and paged."""

import time

from tests.support.stack import Stack
from worker.ledger import keys
from worker.ledger.keys import BY_TIME, DEAD_LETTERS


async def test_a_finished_job_is_kept_for_the_retention_then_forgotten(stack: Stack) -> None:
    """A landed job's record, objects, log and job-id index all expire after the retention."""
    stack.deps.ledger.retention = 600
    job_id = (await stack.submit())["jobId"]
    await stack.run_worker()
    record = await stack.ledger.by_job_id(job_id)
    assert record is not None
    names = [keys.job(record.ref), keys.objects(record.ref), keys.job_log(record.ref)]
    for key in [*names, keys.job_id(job_id)]:
        assert 590 <= await stack.redis.ttl(key) <= 600, key


async def test_a_running_job_never_expires(stack: Stack) -> None:
    """Only a job that has ended has a time to live."""
    stack.sim.config.stall = True
    answer = await stack.submit()
    await stack.sim.settle()
    assert await stack.redis.ttl(keys.job(answer["ref"])) == -1


async def test_the_time_index_is_trimmed_past_the_retention(stack: Stack) -> None:
    """Each poll drops index entries older than the retention."""
    await stack.redis.zadd(BY_TIME, {"old": time.time() - 1000, "new": time.time()})
    stack.deps.ledger.retention = 500
    await stack.poll()
    assert await stack.redis.zrange(BY_TIME, 0, -1) == [b"new"]


async def test_dead_letters_are_capped_and_paged(stack: Stack) -> None:
    """Past the cap the oldest dead letters go; the API pages the rest, newest first."""
    stack.settings.dead_letters_max = 3
    stack.events.statuses = [500] * 100
    for n in range(4):
        await stack.submit(f"prompt {n}")
        await stack.run_worker()
    assert await stack.redis.llen(DEAD_LETTERS) == 3  # type: ignore[misc]
    page = (await stack.api.get("/events/dead", params={"limit": "2"})).json()["deadLetters"]
    assert len(page) == 2
    assert page[0]["failedAt"] >= page[1]["failedAt"]
    rest = (await stack.api.get("/events/dead", params={"offset": "2"})).json()["deadLetters"]
    assert len(rest) == 1
    assert (await stack.api.get("/events/dead", params={"limit": "0"})).status_code == 400
