"""The signed webhook path is one Redis command: the intake script decides, records, moves the
state and queues the landing in arq's own format, which a real arq worker then runs."""

from arq.constants import job_key_prefix

from tests.support.ledger import counters
from tests.support.monitor import monitoring
from tests.support.stack import Stack
from tests.support.webhooks import post_hook
from worker.ledger.keys import LANDING_QUEUE
from worker.runtime.queue import deserialize, enqueue_landing, landing_id


async def quiet_job(stack: Stack) -> tuple[dict[str, str], list[str]]:
    """A job Apiframe finished whose webhooks never came, so the test sends them; and its
    image URLs."""
    stack.sim.config.drop_rate = 1.0
    job = await stack.submit()
    await stack.sim.settle()
    return job, [a.url for a in (await stack.deps.apiframe.get_job(job["jobId"])).assets]


def completed(job_id: str, urls: list[str]) -> dict[str, object]:
    return {"jobId": job_id, "status": "COMPLETED", "progress": 100, "result": {"images": urls}}


async def test_a_fresh_and_a_duplicate_webhook_each_cost_one_redis_command(stack: Stack) -> None:
    """A completed webhook, and the same webhook again after the job landed, each reach Redis
    as one command from the receiver."""
    job, urls = await quiet_job(stack)
    queued = {"jobId": job["jobId"], "status": "QUEUED"}
    await post_hook(stack, queued, ref=job["ref"])  # Redis learns the script (SCRIPT LOAD) once
    async with monitoring(stack) as fresh:
        answer = await post_hook(stack, completed(job["jobId"], urls), ref=job["ref"])
    assert answer.json() == {"accepted": True, "queued": True}
    assert [command[0].lower() for command in fresh] == ["evalsha"]
    await stack.run_worker(settle=False)
    assert (await stack.job(job["jobId"]))["status"] == "LANDED"
    async with monitoring(stack) as duplicate:
        again = await post_hook(stack, completed(job["jobId"], urls), ref=job["ref"])
    assert again.json() == {"accepted": True, "queued": False}  # landed: nothing to queue
    assert [command[0].lower() for command in duplicate] == ["evalsha"], duplicate
    assert "webhook:duplicate" in await counters(stack.redis)


async def test_the_script_queues_the_landing_as_arq_would(stack: Stack) -> None:
    """The job the script writes is arq's own job under arq's key and queue (only the enqueue
    time differs from what `enqueue_job` writes); while it waits, arq refuses another with its
    id; a real worker runs it and the job lands."""
    job, urls = await quiet_job(stack)
    await post_hook(stack, completed(job["jobId"], urls), ref=job["ref"])
    key = job_key_prefix + landing_id(job["jobId"])
    scripted = deserialize(await stack.redis.get(key))
    assert await stack.redis.zscore(LANDING_QUEUE, landing_id(job["jobId"])) is not None
    assert not await enqueue_landing(stack.redis, job["jobId"])  # collapses into the scripted
    await stack.redis.delete(key)
    await stack.redis.zrem(LANDING_QUEUE, landing_id(job["jobId"]))
    assert await enqueue_landing(stack.redis, job["jobId"])
    by_arq = deserialize(await stack.redis.get(key))
    assert {**scripted, "et": 0} == {**by_arq, "et": 0}
    assert abs(scripted["et"] - by_arq["et"]) < 60_000
    assert 0 < await stack.redis.pttl(key) <= 86_400_000
    await stack.run_worker(settle=False)
    assert (await stack.job(job["jobId"]))["status"] == "LANDED"
