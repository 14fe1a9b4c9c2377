"""A finished job, once compacted, keeps a summary of a few hundred bytes in Redis and its whole
record and log in S3 beside its manifest; every answer about it stays the same."""

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from simulator.local_s3 import LocalS3
from tests.support.stack import BUCKET, CALLER_KEYS, Sink, Stack, stack_on
from worker.ledger import keys
from worker.ledger.archive import TIMELINE, Archive, Archived
from worker.ledger.log import LogEntry
from worker.ledger.scripts import source
from worker.sinks.body import event_id

MOST = 1500  # bytes a finished job may keep in Redis, its share of the indexes included


@pytest.fixture
async def stack(redis_url: str, s3_server: LocalS3, sink: Sink) -> AsyncIterator[Stack]:
    """Jobs are compacted as soon as they end."""
    async with stack_on(redis_url, s3_server, sink, compact_after=0) as found:
        yield found


async def answers(stack: Stack, job_id: str, ref: str) -> dict[str, object]:
    """What the API says of the job: itself, its log, and the job list's filters."""
    queries = {
        "job": f"/jobs/{job_id}",
        "by ref": f"/jobs/{ref}",
        "log": f"/jobs/{job_id}/log",
        "landed": "/jobs?status=LANDED",
        "failed": "/jobs?status=FAILED",
        "search": "/jobs?q=kite",
        "model": "/jobs?model=grok-imagine-image",
    }
    found = {}
    for name, path in queries.items():
        answer = await stack.api.get(path)
        assert answer.status_code == 200, answer.text
        found[name] = answer.json()
    return found


async def kept_in_redis(stack: Stack, ref: str, job_id: str) -> int:
    """The bytes the job's own keys hold, and its entries in the job list's indexes (each
    measured as what one more member adds to its sorted set)."""
    owned = [keys.job(ref), keys.objects(ref), keys.job_log(ref), keys.job_id(job_id)]
    owned.append(keys.event(event_id(job_id, "job.landed")))
    total = sum([await stack.redis.memory_usage(key, samples=0) or 0 for key in owned])
    indexes = [keys.BY_TIME, keys.by_status("LANDED"), keys.by_model("grok-imagine-image")]
    for index in indexes:
        before = await stack.redis.memory_usage(index, samples=0) or 0
        score = await stack.redis.zscore(index, ref)
        await stack.redis.zrem(index, ref)
        total += before - (await stack.redis.memory_usage(index, samples=0) or 0)
        await stack.redis.zadd(index, {ref: score})
    return total


async def test_a_compacted_job_keeps_little_in_redis_and_answers_the_same(stack: Stack) -> None:
    stack.sim.config.images_per_job = 2
    landed = await stack.submit("a red kite over dunes", metadata={"order": "42"})
    await stack.run_worker()
    stack.sim.config.failure_rate = 1.0
    await stack.submit("a kite that will fail")
    await stack.run_worker()
    job_id, ref = landed["jobId"], landed["ref"]
    before = await answers(stack, job_id, ref)
    assert before["job"]["status"] == "LANDED"  # type: ignore[index]
    assert len(before["failed"]["jobs"]) == 1  # type: ignore[index]
    kept_before = await kept_in_redis(stack, ref, job_id)

    await stack.poll()

    summary = await stack.redis.hgetall(keys.job(ref))  # type: ignore[misc]
    assert summary[b"archive"] == f"apiframe/{job_id}/{TIMELINE}".encode()
    assert not await stack.redis.exists(keys.objects(ref), keys.job_log(ref))
    kept = await kept_in_redis(stack, ref, job_id)
    assert kept <= MOST < kept_before, (kept, kept_before)
    timeline = json.loads(stack.object(f"apiframe/{job_id}/{TIMELINE}"))
    assert [entry["event"] for entry in timeline["log"]] == [
        entry["event"]
        for entry in before["log"]["entries"]  # type: ignore[index]
    ]
    assert stack.keys(job_id)[-2:] == [f"apiframe/{job_id}/manifest.json", timeline_key(job_id)]

    assert await answers(stack, job_id, ref) == before


async def test_what_happens_to_a_compacted_job_is_still_told(stack: Stack) -> None:
    """A replay after compaction lands nothing again; its entries join the timeline's."""
    landed = await stack.submit()
    await stack.run_worker()
    job_id = landed["jobId"]
    entries = await stack.log_events(job_id)
    await stack.poll()
    assert await stack.redis.hexists(keys.job(landed["ref"]), "archive")  # type: ignore[misc]

    replayed = await stack.api.post(f"/jobs/{job_id}/replay")
    assert replayed.status_code == 202, replayed.text
    await stack.run_worker(settle=False)

    after = await stack.log_events(job_id)
    assert after[: len(entries)] == entries
    assert "event.replayed" in after[len(entries) :]
    assert (await stack.job(job_id))["status"] == "LANDED"
    # The log begun again expires, as the summary does, instead of staying for good.
    assert await stack.redis.ttl(keys.job_log(landed["ref"])) > 0


def timeline_key(job_id: str) -> str:
    return f"apiframe/{job_id}/{TIMELINE}"


async def test_a_job_that_changed_while_its_timeline_was_written_is_left_whole(
    stack: Stack,
) -> None:
    """The summary replaces the record only if the record and log are as the timeline has
    them; else everything stays, to be compacted at a later pass."""
    ref = (await stack.submit())["ref"]
    await stack.run_worker()
    written = await stack.redis.hget(keys.job(ref), "updated_at")  # type: ignore[misc]
    [(last, _)] = await stack.redis.xrevrange(keys.job_log(ref), count=1)
    script = stack.redis.register_script(source("compact"))
    names = [keys.job(ref), keys.objects(ref), keys.job_log(ref), keys.COMPACT]
    for stale in ([ref, "0", last, "elsewhere", "{}"], [ref, written, "0-1", "elsewhere", "{}"]):
        assert await script(keys=names, args=stale) == -1
        assert await stack.redis.exists(keys.objects(ref), keys.job_log(ref)) == 2
        assert not await stack.redis.hexists(keys.job(ref), "archive")  # type: ignore[misc]

    await stack.poll()

    assert await stack.redis.hexists(keys.job(ref), "archive")  # type: ignore[misc]


async def test_apiframes_own_api_answers_the_same_and_the_callers_url_stays_in_redis(
    stack: Stack,
) -> None:
    """A `/v2/` caller's job reads the same before and after compaction; its webhook URL,
    which may carry the caller's token, is kept in the summary and never written to S3."""
    key = {"X-API-Key": CALLER_KEYS["alpha"]}
    async with httpx.AsyncClient(base_url=stack.receiver_url, headers=key) as alpha:
        body = {"model": "grok-imagine-image", "prompt": "a kite", "webhookUrl": stack.events.url}
        accepted = await alpha.post("/v2/images/generate", json=body)
        assert accepted.status_code == 202, accepted.text
        await stack.all_sent()
        await stack.run_worker()
        paths = [f"/v2/jobs/{accepted.json()['jobId']}", "/v2/jobs"]
        before = [(await alpha.get(path)).json() for path in paths]
        assert before[0]["status"] == "COMPLETED"

        await stack.poll()

        assert [(await alpha.get(path)).json() for path in paths] == before
    [ref] = [k.decode().removeprefix(keys.JOB) async for k in stack.redis.scan_iter(keys.JOB + "*")]
    summary = await stack.redis.hgetall(keys.job(ref))  # type: ignore[misc]
    assert summary[b"callback_url"] == stack.events.url.encode()
    timeline = stack.object(summary[b"archive"].decode())
    assert stack.events.url.encode() not in timeline


async def test_timelines_read_back_are_kept_within_a_memory_budget(stack: Stack) -> None:
    """Paging through old jobs, however many, keeps at most the budget's bytes of timelines;
    what is kept answers again without S3."""
    archive = Archive(stack.deps.store, most_bytes=50_000)
    entry = LogEntry("1-0", 0.0, "worker", "job.landed", "", "", {"pad": "x" * 10_000})
    written = [
        await archive.write(f"cache-{n}", Archived({"ref": f"{n:032x}"}, {}, [entry]))
        for n in range(40)
    ]
    for key in written * 5:
        assert (await archive.read(key)).fields["ref"]
        assert archive.cached_bytes <= archive.most_bytes
    kept = list(archive._cache)
    assert 0 < len(kept) < len(written)
    stack.s3.delete_object(Bucket=BUCKET, Key=kept[-1])
    assert (await archive.read(kept[-1])).entries == [entry]  # from memory: S3 has it no more
