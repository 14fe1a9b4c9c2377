"""S3 down for a while, then back, reached through a proxy the test cuts: landings retry with
backoff, nothing half written shows LANDED, and once S3 is back each job lands once, its images
not stored again."""

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from simulator.local_s3 import LocalS3
from tests.support.joblog import entries
from tests.support.proxy import Proxy, healed, port_of, proxy_to
from tests.support.stack import BUCKET, Sink, Stack, stack_on
from tests.support.storage import direct_s3, keys_in
from tests.support.waiting import background, eventually
from worker.sinks.body import event_id


def manifest_put(data: bytes) -> bool:
    return data.startswith(b"PUT ") and b"/manifest.json" in data.split(b"\r\n", 1)[0]


async def test_an_s3_outage_is_waited_out_and_nothing_half_written_is_landed(
    stack_s3: tuple[Stack, Proxy], s3_server: LocalS3
) -> None:
    """S3 refusing the manifests, then down altogether: landings retry with backoff, no job is
    LANDED without all its objects and its manifest, and once S3 is back each job lands once,
    its images not stored again."""
    stack, proxy = stack_s3
    s3 = direct_s3(s3_server)
    stack.sim.config.images_per_job = 2
    job_ids = [(await stack.submit(f"outage {n}"))["jobId"] for n in range(3)]
    await stack.sim.settle()
    proxy.refuse = manifest_put  # images go in; each manifest is cut off on the wire
    seen_landed: dict[str, list[str]] = {}

    async def look() -> None:
        """For each job that shows LANDED, what S3 holds under its prefix then."""
        for job_id in job_ids:
            record = await stack.ledger.by_job_id(job_id)
            if record is not None and record.status.value == "LANDED":
                prefix = f"{stack.settings.s3_prefix}{job_id}/"
                seen_landed.setdefault(job_id, await asyncio.to_thread(keys_in, s3, prefix))

    async def watch() -> None:
        """Whenever a job shows LANDED, S3 must hold its manifest and every image."""
        while True:
            await look()
            await asyncio.sleep(0.02)

    async def retried(times: int, reason: str) -> bool:
        """Each landing retried `times` for `reason`; meanwhile none may end, either way."""
        for job_id in job_ids:
            status = (await stack.job(job_id))["status"]
            assert status == "COMPLETED", f"{job_id} is {status} while S3 cannot take it all"
            found = [e for e in await entries(stack, job_id) if e["event"] == "landing.retry"]
            if sum(reason in e["detail"]["reason"] for e in found) < times:
                return False
        return True

    async with (
        background(watch()),
        background(stack.run_worker(settle=False), drain=30) as worker,
        healed(proxy),
    ):
        # A connection dropped mid-request, then none taken at all.
        await eventually(lambda: retried(2, "ConnectionClosedError"), "refused manifests")
        for job_id in job_ids:
            prefix = f"{stack.settings.s3_prefix}{job_id}/"
            assert (await stack.job(job_id))["status"] == "COMPLETED"
            stored = await asyncio.to_thread(keys_in, s3, prefix)
            assert stored == [f"{prefix}1.png", f"{prefix}2.png"]

        await proxy.cut()  # now S3 is down altogether
        await eventually(lambda: retried(2, "EndpointConnectionError"), "the outage met")
        assert stack.delivered() == []
        assert [(await stack.job(job_id))["status"] for job_id in job_ids] == ["COMPLETED"] * 3

        proxy.refuse = None
        await proxy.restore()
        await asyncio.wait_for(asyncio.shield(worker), timeout=60)
    await look()  # a landing the watcher's last pass came too early for
    for job_id in job_ids:
        prefix = f"{stack.settings.s3_prefix}{job_id}/"
        every_key = [f"{prefix}1.png", f"{prefix}2.png", f"{prefix}manifest.json"]
        assert seen_landed[job_id] == every_key  # never LANDED with anything missing
        job = await stack.job(job_id)
        assert job["status"] == "LANDED"
        manifest = json.loads(
            s3.get_object(Bucket=BUCKET, Key=f"{prefix}manifest.json")["Body"].read()
        )
        assert [o["key"] for o in manifest["objects"]] == every_key[:2]
        events = await stack.log_events(job_id)
        assert (events.count("image.stored"), events.count("job.landed")) == (2, 1)
    assert sorted(e["id"] for e in stack.delivered()) == sorted(
        event_id(job_id, "job.landed") for job_id in job_ids
    )


@pytest.fixture
async def stack_s3(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> AsyncIterator[tuple[Stack, Proxy]]:
    """A stack whose S3 is reached through a proxy that the test can cut; landings back off
    from 0.2 s."""
    async with (
        proxy_to(port_of(s3_server.endpoint_url)) as proxy,
        stack_on(
            redis_url, s3_server, sink, s3_endpoint_url=proxy.url, landing_backoff=0.2
        ) as stack,
    ):
        yield stack, proxy
