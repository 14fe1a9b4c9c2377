"""Faults, each made real: Redis restarted mid-run, S3 down and back, Apiframe throttling and
failing, answers lost on the wire, and a flood of duplicate and forged webhooks. Each test checks
what was kept: every job lands once, with one set of objects, one `job.landed` and one event id,
and no submit is billed twice."""

import asyncio
import email.utils
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
import redis
from arq import func
from arq.connections import ArqRedis
from botocore.config import Config
from structlog.testing import capture_logs

from simulator.local_s3 import LocalS3, free_port
from tests.conftest import (
    BUCKET,
    Sink,
    Stack,
    fast_config,
    stack_on,
)
from tests.support.ledger import counters, recent
from tests.test_webhooks import HOOK, rejected, signed
from worker.events import event_id
from worker.ledger.keys import EVENTS, POLL_SET
from worker.runtime.arq_worker import StoppableWorker
from worker.runtime.runner import Build, keep_running, supervise

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ROOT = Path(__file__).resolve().parents[1]
HEALTH_KEYS = ("imagedock:landing:health-check", "imagedock:polling:health-check")


# Waiting on conditions, never on the clock alone.


async def eventually(
    condition: Callable[[], Awaitable[bool]], what: str, deadline: float = 60.0
) -> None:
    end = time.monotonic() + deadline
    while not await condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


def wait_sync(condition: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.05)


def direct_s3(server: LocalS3) -> "S3Client":
    """A client straight to the S3 server, whatever stands between it and imagedock."""
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    return client


def keys_in(client: "S3Client", prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


async def entries(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    answer = await stack.api.get(f"/jobs/{job_id}/log")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["entries"]
    return found


async def streamed_event_ids(stack: Stack) -> list[str]:
    """The ids of the events published to the Redis stream, one entry per publication."""
    found = await stack.redis.xrange(EVENTS)
    return sorted(fields[b"id"].decode() for _, fields in found)


# 1. Redis restarted mid-run.


@dataclass
class PrivateRedis:
    """A redis-server of the test's own, persisting every write to its append-only file, that
    can be stopped and started again on the same port and directory."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        command += ["--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(command)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def answers() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.log()
            try:
                return bool(client.ping())
            except redis.exceptions.RedisError:
                return False

        try:
            wait_sync(answers, "redis-server to answer")
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it, and wait for it to exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0, self.log()
        self.process = None

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: scripts/with-redis installs it")
    server = PrivateRedis(Path(tempfile.mkdtemp(prefix="imagedock-redis-")))
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait()
        shutil.rmtree(server.directory, ignore_errors=True)


@contextmanager
def worker_process(stack: Stack, output: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`imagedock worker`, as deployed, against the stack's Redis, Apiframe, S3 and sink."""
    env = stack.worker_env(
        event_retry_schedule="0,0.2,0.5,1,2,4",
        poll_after=str(stack.settings.poll_after),
        poll_max_interval="2",
        landing_backoff="0.2",
    )
    with output.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "imagedock.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def logged(output: Path) -> list[dict[str, Any]]:
    """The JSON lines a process has written so far."""
    lines = []
    for line in output.read_text().splitlines():
        with suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def still_running(process: subprocess.Popen[bytes], output: Path) -> None:
    """Fail with the end of the process's log if it has exited."""
    if process.poll() is not None:
        tail = "\n".join(output.read_text().splitlines()[-40:])
        pytest.fail(f"the worker process exited with {process.returncode}:\n{tail}")


def cut_short(lines: list[dict[str, Any]], job_id: str) -> bool:
    """arq's line for a landing of `job_id` that ended in an exception."""
    return any(f"land:{job_id}:land failed" in str(line.get("event")) for line in lines)


def ended(lines: list[dict[str, Any]], job_id: str) -> bool:
    """arq's line for a landing of `job_id` that ended: failed, done, or to be retried (the
    line that starts one reads `land:<id>:land(...)`)."""
    return any(f"land:{job_id}:land " in str(line.get("event")) for line in lines)


async def test_redis_restarted_mid_run_loses_no_job_and_lands_each_once(
    private_redis: PrivateRedis, s3_server: LocalS3, sink: Sink, tmp_path: Path
) -> None:
    """Redis stopped with landings half done and webhooks coming, then started again on its
    append-only file: the worker process waits it out, and every job lands once, with one set
    of objects, one job.landed and one event id; a submit refused in the outage, repeated
    with its Idempotency-Key, bills one job."""
    output = tmp_path / "worker.log"
    async with stack_on(
        private_redis.url, s3_server, sink, poll_after=10.0, landing_timeout=4.0
    ) as stack:
        with worker_process(stack, output) as worker:

            async def workers_up() -> bool:
                return bool(await stack.redis.exists(*HEALTH_KEYS) == 2)

            await eventually(workers_up, "both arq workers")
            # Two jobs whose landings are half done when Redis stops: two slow images each.
            landing = []
            for n in range(2):
                stack.sim.plan_next_job(images_per_job=2, image_bytes=300_000, cdn_chunk_delay=0.2)
                landing.append((await stack.submit(f"landing {n}"))["jobId"])
            # Two jobs whose webhooks never come: only the poller can find them finished.
            lost = []
            for n in range(2):
                stack.sim.plan_next_job(drop_rate=1.0)
                lost.append(await stack.submit(f"lost {n}"))
            await stack.sim.settle()

            async def first_image_stored() -> bool:
                logs = [await stack.log_events(job_id) for job_id in landing]
                return all("image.stored" in events for events in logs)

            await eventually(first_image_stored, "the first image of each landing")
            # No poll is due yet, so none is under way: a poll cut short by the outage would
            # leave its jobs leased to it for two minutes, longer than this test waits.
            polls = await stack.redis.zrange(POLL_SET, 0, -1, withscores=True)
            assert min(due for _, due in polls) > time.time()
            private_redis.stop()

            # What arrives while Redis is down is not taken: Apiframe's webhook and a
            # caller's submit are answered with a server error, to be sent again.
            job = stack.sim.jobs[lost[0]["jobId"]]
            completed = {"jobId": job.id, "status": "COMPLETED"}
            body, headers = signed({**completed, "result": {"images": job.image_urls}})
            params = {"ref": lost[0]["ref"]}
            hook = await stack.api.post(HOOK, content=body, headers=headers, params=params)
            again = {"Idempotency-Key": "in-the-outage"}
            refused = await stack.api.post("/jobs", json={"prompt": "p"}, headers=again)
            assert hook.status_code >= 500, hook.text
            assert refused.status_code >= 500, refused.text
            assert (await stack.api.get("/healthz")).status_code == 200

            async def outage_felt() -> bool:
                still_running(worker, output)
                lines = logged(output)
                lost_by = {
                    line.get("worker") for line in lines if line.get("event") == "worker.redis_lost"
                }
                # Each half-done landing has ended: cut short by the outage, or before it.
                settled = all(ended(lines, j) for j in landing)
                return lost_by == {"landing", "polling"} and settled

            await eventually(outage_felt, "the worker to meet the outage", deadline=30)
            assert any(cut_short(logged(output), job_id) for job_id in landing)
            still_running(worker, output)  # it waits for Redis; it does not exit
            private_redis.start()

            retried = await stack.api.post("/jobs", json={"prompt": "p"}, headers=again)
            assert retried.status_code == 202, retried.text
            after = (await stack.submit("after the restart"))["jobId"]
            every = [
                *landing,
                *(answer["jobId"] for answer in lost),
                retried.json()["jobId"],
                after,
            ]

            async def all_landed() -> bool:
                statuses = [(await stack.job(job_id))["status"] for job_id in every]
                return statuses == ["LANDED"] * len(every)

            await eventually(all_landed, "every job to land", deadline=90)
            expected = sorted(event_id(job_id, "job.landed") for job_id in every)

            async def all_delivered() -> bool:
                delivered = {e["id"] for e in stack.delivered("job.landed")}
                return delivered == set(expected)

            await eventually(all_delivered, "every job.landed delivered")
            still_running(worker, output)

        for job_id in every:
            images = 2 if job_id in landing else 1
            events = await stack.log_events(job_id)
            assert events.count("job.landed") == 1, (job_id, events)
            # Once each: an object is recorded and logged in one transaction.
            assert events.count("image.stored") == images, (job_id, events)
            assert len(stack.keys(job_id)) == images + 1  # and the manifest
            objects = (await stack.job(job_id))["objects"]
            assert sorted(stored["index"] for stored in objects) == list(range(1, images + 1))
            for stored in objects:
                assert stack.object(stored["key"]) == stack.sim.image(stored["sourceUrl"]).read()
        for answer in lost:
            assert "webhook.missed" in await stack.log_events(answer["jobId"])
        # One publication per job, and every delivery of it under that one id.
        assert await streamed_event_ids(stack) == expected
        assert {e["id"] for e in stack.delivered()} == set(expected)
        assert len(stack.sim.jobs) == len(every)  # the refused submit billed once, after


@asynccontextmanager
async def failing_worker(
    redis_url: str, fault: Callable[[], None], *, hang: bool = False
) -> AsyncIterator[Build]:
    """Builds arq workers that meet `fault` and then fail with an error Redis has no part in,
    or, with `hang`, wait there for good."""
    pools: list[ArqRedis] = []

    async def startup(ctx: dict[str, Any]) -> None:
        fault()
        if hang:
            await asyncio.Event().wait()
        raise RuntimeError("a bug")

    async def idle(ctx: dict[str, Any]) -> None:
        """arq wants a function to run."""

    def build() -> StoppableWorker:
        pool = ArqRedis.from_url(redis_url, socket_connect_timeout=1)
        pools.append(pool)
        return StoppableWorker(
            functions=[func(idle, name="idle")],
            redis_pool=pool,
            on_startup=startup,
            handle_signals=False,
        )

    try:
        yield build
    finally:
        for pool in pools:
            await pool.aclose()


async def test_a_worker_failing_while_redis_answers_ends_the_process(
    private_redis: PrivateRedis,
) -> None:
    with capture_logs() as logs:
        async with failing_worker(private_redis.url, lambda: None) as build:
            exit_code = await supervise({"landing": build})
    assert exit_code == 1
    died = [line for line in logs if line["event"] == "worker.died"]
    assert "a bug" in died[0]["error"]


async def test_a_worker_failing_in_a_redis_outage_waits_for_redis(
    private_redis: PrivateRedis,
) -> None:
    """Whatever error ends a worker while Redis does not answer is the outage's: the worker is
    started again once Redis is back, and the process stays up."""
    with capture_logs() as logs:
        async with failing_worker(private_redis.url, private_redis.stop) as build:
            running = asyncio.create_task(supervise({"landing": build}, restart_pause=0.05))

            async def restarted() -> bool:
                return any(line["event"] == "worker.redis_lost" for line in logs)

            await eventually(restarted, "the worker to wait for Redis")
            os.kill(os.getpid(), signal.SIGTERM)  # supervise's own handler takes it
            assert await running == 0
    lost = next(line for line in logs if line["event"] == "worker.redis_lost")
    assert "a bug" in lost["error"]
    assert not any(line["event"] == "worker.died" for line in logs)


async def test_a_worker_task_cancelled_in_a_redis_outage_ends(
    private_redis: PrivateRedis,
) -> None:
    """A cancellation of the supervising task itself (the loop closing) is obeyed, not taken
    for the outage's doing."""
    hanging = asyncio.Event()

    def fault() -> None:
        private_redis.stop()
        hanging.set()

    async with failing_worker(private_redis.url, fault, hang=True) as build:
        running = asyncio.create_task(keep_running("landing", build, {}, asyncio.Event(), 0.05))
        await asyncio.wait_for(hanging.wait(), 30)
        running.cancel()
        done, _ = await asyncio.wait({running}, timeout=15)
        assert running in done, "the cancelled task went on restarting the worker"
        assert running.cancelled()


async def test_a_redis_outage_is_answered_503_with_an_error(
    private_redis: PrivateRedis, s3_server: LocalS3, sink: Sink
) -> None:
    """With Redis down, the API and the webhook answer 503 with a JSON `error` (a submit also
    with Retry-After), as for any outage the caller should wait out, not a bare 500."""
    async with stack_on(private_redis.url, s3_server, sink) as stack:
        job_id = (await stack.submit())["jobId"]
        private_redis.stop()
        body, headers = signed({"jobId": job_id, "status": "COMPLETED"})
        answers = {
            "submit": await stack.api.post("/jobs", json={"prompt": "p"}),
            "job": await stack.api.get(f"/jobs/{job_id}"),
            "webhook": await stack.api.post(HOOK, content=body, headers=headers),
        }
        assert (await stack.api.get("/healthz")).status_code == 200
        private_redis.start()
    for name, answer in answers.items():
        assert answer.status_code == 503, (name, answer.status_code, answer.text)
        assert answer.headers["content-type"] == "application/json", name
        assert "redis" in answer.json()["error"].lower(), name
    assert int(answers["submit"].headers["retry-after"]) > 0


# A TCP proxy between imagedock and a server, to cut the line or drop chosen exchanges.


class Proxy:
    """Forwards loopback TCP to `target`. `cut()` drops every connection and refuses new ones
    until `restore()`, on the same port; `refuse` drops a connection, unforwarded, when a
    request matches it; `lose_answers` forwards that many matching requests and drops the
    connection instead of passing the answer back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.refuse: Callable[[bytes], bool] | None = None
        self.lose: Callable[[bytes], bool] | None = None
        self.lose_answers = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()  # which ends every connection's pumps
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(upstream)
        doomed = asyncio.Event()  # the answer to what was just sent is to be lost

        def both_closed() -> None:
            writer.close()
            upstream.close()

        async def requests() -> None:
            with suppress(OSError):
                while data := await reader.read(65536):
                    if self.refuse is not None and self.refuse(data):
                        break
                    if self.lose is not None and self.lose_answers > 0 and self.lose(data):
                        self.lose_answers -= 1
                        doomed.set()
                    upstream.write(data)
                    await upstream.drain()
            both_closed()

        async def answers() -> None:
            with suppress(OSError):
                while data := await upstream_reader.read(65536):
                    if doomed.is_set():
                        break
                    writer.write(data)
                    await writer.drain()
            both_closed()

        try:
            await asyncio.gather(requests(), answers())
        finally:
            self._writers.discard(writer)
            self._writers.discard(upstream)
            self._tasks.discard(task)


@asynccontextmanager
async def proxy_to(target_port: int) -> AsyncIterator[Proxy]:
    proxy = Proxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@asynccontextmanager
async def background(
    work: Awaitable[None], *, drain: float = 0.0
) -> AsyncIterator["asyncio.Task[None]"]:
    """Run `work` beside the block. When the block ends, let it finish for up to `drain`
    seconds (an arq worker does not always heed a cancel), then cancel what is left."""
    task = asyncio.ensure_future(work)
    try:
        yield task
    finally:
        if drain:
            await asyncio.wait([task], timeout=drain)
        task.cancel()
        await asyncio.wait([task], timeout=10)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the block itself awaits what it wants to see


@asynccontextmanager
async def healed(proxy: "Proxy") -> AsyncIterator[None]:
    """Whatever happens in the block, the line is whole again after it."""
    try:
        yield
    finally:
        proxy.refuse = proxy.lose = None
        if not proxy.open:
            await proxy.restore()


def port_of(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


# 2. S3 down for a while, then back.


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


# 3. Apiframe answering 429 with Retry-After and 503 bursts, and answers lost on the wire.

SUBMIT = "/v2/images/generate"
HTTP_DATE = "an HTTP date 30 s ahead"


def billed(stack: Stack) -> int:
    """Credits Apiframe has taken, in jobs."""
    config = stack.sim.config
    return (fast_config().credits - config.credits) // config.credit_cost


def keys_sent(stack: Stack) -> set[str | None]:
    return {r.headers.get("idempotency-key") for r in stack.sim.submissions()}


@pytest.mark.parametrize(
    ("status", "retry_after", "told"),
    [
        (429, "7", 429),
        (429, HTTP_DATE, 429),
        (503, "1", 503),  # Apiframe's queue or database outage, JSON
        (502, "1", 503),  # a proxy's HTML page
        (500, "1", 503),  # plain text
    ],
)
async def test_a_throttled_or_failing_submit_is_told_and_bills_once_when_repeated(
    stack: Stack, status: int, retry_after: str, told: int
) -> None:
    """A burst of 429s (with Retry-After in seconds or as a date) or 5xx on submit is passed
    to the caller as 429 with that Retry-After, or 503; repeating the POST with its
    Idempotency-Key then gets one job, billed once, that lands once."""
    if retry_after == HTTP_DATE:
        retry_after = email.utils.formatdate(time.time() + 30, usegmt=True)
    stack.sim.fail_next(status, times=2, path=SUBMIT, retry_after=retry_after)
    key = {"Idempotency-Key": "throttled"}
    refused = [await stack.api.post("/jobs", json={"prompt": "p"}, headers=key) for _ in "ab"]
    for answer in refused:
        assert answer.status_code == told, answer.text
        assert answer.json()["error"].startswith("Apiframe: ")
        if told == 429:
            low, high = (7, 7) if retry_after == "7" else (25, 30)  # the date: 30 s from then
            assert low <= int(answer.headers["retry-after"]) <= high, answer.headers
        else:
            assert "same Idempotency-Key" in answer.json()["error"]
    assert billed(stack) == 0
    accepted = await stack.api.post("/jobs", json={"prompt": "p"}, headers=key)
    assert accepted.status_code == 202, accepted.text
    assert [r.ref for r in await recent(stack.ledger)] == [accepted.json()["ref"]]
    assert (len(stack.sim.submissions()), len(keys_sent(stack))) == (3, 1)
    await stack.run_worker()
    job_id = accepted.json()["jobId"]
    assert (await stack.job(job_id))["status"] == "LANDED"
    assert (await stack.log_events(job_id)).count("job.landed") == 1
    assert (len(stack.sim.jobs), billed(stack)) == (1, 1)


@pytest.fixture
async def stack_apiframe(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> AsyncIterator[tuple[Stack, Proxy]]:
    """A stack that reaches Apiframe through a proxy that can lose its answers."""
    proxies: list[Proxy] = []

    async def via(url: str) -> str:
        proxies.append(Proxy(port_of(url)))
        await proxies[0].start()
        return proxies[0].url

    try:
        async with stack_on(redis_url, s3_server, sink, apiframe_via=via) as stack:
            yield stack, proxies[0]
    finally:
        for proxy in proxies:
            await proxy.close()


@pytest.mark.parametrize(("lost", "told"), [(1, 202), (3, 503)])
async def test_a_submit_whose_answer_is_lost_bills_once(
    stack_apiframe: tuple[Stack, Proxy], lost: int, told: int
) -> None:
    """Apiframe takes the submit but its answer is lost on the way back: the client's own
    retries, under the same Idempotency-Key, absorb one loss; after three the caller is told
    503, and its repeat with its Idempotency-Key gets the job Apiframe made. One job is
    billed, and it lands once."""
    stack, proxy = stack_apiframe
    proxy.lose = lambda data: data.startswith(f"POST {SUBMIT} ".encode())
    proxy.lose_answers = lost
    key = {"Idempotency-Key": "lost-answer"}
    first = await stack.api.post("/jobs", json={"prompt": "p"}, headers=key)
    assert first.status_code == told, first.text
    answer = first
    if told != 202:
        assert "same Idempotency-Key" in first.json()["error"]
        answer = await stack.api.post("/jobs", json={"prompt": "p"}, headers=key)
        assert answer.status_code == 202, answer.text
    assert (len(stack.sim.submissions()), len(keys_sent(stack))) == (lost + 1, 1)
    assert list(stack.sim.jobs) == [answer.json()["jobId"]]
    await stack.run_worker()
    job_id = answer.json()["jobId"]
    assert (await stack.job(job_id))["status"] == "LANDED"
    assert (await stack.log_events(job_id)).count("job.landed") == 1
    assert [e["id"] for e in stack.delivered()] == [event_id(job_id, "job.landed")]
    assert billed(stack) == 1


async def test_the_poller_keeps_a_job_through_apiframe_503s_and_429s(stack: Stack) -> None:
    """With the webhook lost, polls answered 503 and then 429 fail nothing and lose nothing:
    each is logged and the job checked again, and the next good answer lands it once."""
    stack.sim.config.drop_rate = 1.0
    answer = await stack.submit()
    await stack.sim.settle()
    await stack.wait_until_due()
    for status in (503, 429):
        stack.sim.fail_next(status, path="/v2/jobs/")
        assert await stack.poll() == 1
        assert (await stack.job(answer["jobId"]))["status"] == "QUEUED"
        assert await stack.redis.zscore(POLL_SET, answer["ref"]) is not None
        await stack.ledger.schedule_poll(answer["ref"], time.time())  # due again now
    errors = [e for e in await entries(stack, answer["jobId"]) if e["event"] == "poll.error"]
    assert [
        ("unavailable" in e["detail"]["error"], "Rate limit" in e["detail"]["error"])
        for e in errors
    ] == [(True, False), (False, True)]
    assert await stack.poll() == 1
    await stack.run_worker()
    events = await stack.log_events(answer["jobId"])
    assert (await stack.job(answer["jobId"]))["status"] == "LANDED"
    assert (events.count("webhook.missed"), events.count("job.landed")) == (1, 1)


async def test_a_poll_answered_429_waits_for_its_retry_after(stack: Stack) -> None:
    """A poll Apiframe answers 429 with Retry-After: 30 is not made again before those 30 s."""
    stack.sim.config.drop_rate = 1.0
    answer = await stack.submit()
    await stack.sim.settle()
    await stack.wait_until_due()
    stack.sim.fail_next(429, path="/v2/jobs/", retry_after="30")
    throttled_at = time.time()
    assert await stack.poll() == 1
    due = await stack.redis.zscore(POLL_SET, answer["ref"])
    assert due is not None
    assert due >= throttled_at + 30


async def test_a_landing_throttled_by_apiframe_waits_for_its_retry_after(stack: Stack) -> None:
    """The confirmation an unsigned webhook asks for, answered 429 with Retry-After: 2, is
    retried after those 2 s, not the landing's shorter backoff, then lands once."""
    stack.sim.config.unsigned = True
    job_id = (await stack.submit())["jobId"]
    stack.sim.fail_next(429, path="/v2/jobs/", retry_after="2")
    await stack.run_worker()
    [retry] = [e for e in await entries(stack, job_id) if e["event"] == "landing.retry"]
    assert retry["detail"]["retry_in"] == 2.0
    assert "Rate limit" in retry["detail"]["reason"]
    assert (await stack.job(job_id))["status"] == "LANDED"
    assert (await stack.log_events(job_id)).count("job.landed") == 1


# 4. Ten thousand webhooks, duplicate and forged, mixed with real ones.


class Wire:
    """A bare HTTP/1.1 keep-alive connection. A flood sent through httpx measures mostly
    httpx: this client costs next to nothing, so the receiver does the work."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        lines = [f"POST {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


@asynccontextmanager
async def wire_to(url: str) -> AsyncIterator[Wire]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
    try:
        yield Wire(reader, writer)
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


FLOOD = 10_000
KINDS = ("real", "bad_signature", "unknown_signed", "unknown_unsigned", "other_job")
ANSWERS = {
    "real": 200,
    "bad_signature": 401,
    "unknown_signed": 404,
    "unknown_unsigned": 404,
    "other_job": 409,
}


@dataclass(frozen=True)
class Hook:
    kind: str
    body: bytes
    headers: dict[str, str]
    ref: str | None
    job_id: str  # the job the body names


def flood_of(stack: Stack, real: list[dict[str, Any]], count: int) -> list[Hook]:
    """`count` webhooks, a fifth of each kind, shuffled: Apiframe's real completed webhook for
    each real job (sent many times); the same body signed with another key and naming other
    images; completed webhooks for job ids imagedock never submitted, signed without a ref
    and unsigned with a ref of the right shape; and a real job's signed webhook posted on
    another real job's ref."""
    import random

    rng = random.Random(7)
    unknown = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(50)]

    def completed(job_id: str, images: list[str]) -> dict[str, Any]:
        return {
            "event": "completed",
            "jobId": job_id,
            "status": "COMPLETED",
            "progress": 100,
            "result": {"images": images},
            "model": "grok-imagine-image",
        }

    hooks = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        owner = real[n // len(KINDS) % len(real)]
        urls = stack.sim.jobs[owner["jobId"]].image_urls
        if kind == "real":
            body, headers = signed(completed(owner["jobId"], urls))
            hooks.append(Hook(kind, body, headers, owner["ref"], owner["jobId"]))
        elif kind == "bad_signature":
            forged = completed(owner["jobId"], ["http://127.0.0.1:9/evil.png"])
            body, headers = signed(forged, key="afk_someone-else-entirely")
            hooks.append(Hook(kind, body, headers, owner["ref"], owner["jobId"]))
        elif kind == "unknown_signed":
            stranger = rng.choice(unknown)
            body, headers = signed(completed(stranger, urls))
            hooks.append(Hook(kind, body, headers, None, stranger))
        elif kind == "unknown_unsigned":
            stranger = rng.choice(unknown)
            body, headers = signed(completed(stranger, urls))
            del headers["X-Webhook-Signature"]
            hooks.append(Hook(kind, body, headers, uuid.uuid4().hex, stranger))
        else:
            other = real[(real.index(owner) + 1) % len(real)]
            body, headers = signed(
                completed(other["jobId"], stack.sim.jobs[other["jobId"]].image_urls)
            )
            hooks.append(Hook(kind, body, headers, owner["ref"], other["jobId"]))
    rng.shuffle(hooks)
    return hooks


async def test_ten_thousand_duplicate_and_forged_webhooks_land_each_real_job_once(
    stack: Stack,
) -> None:
    """10,000 webhooks, real ones many times over mixed with forged signatures, unknown job
    ids and other jobs' ids on a ref, while a worker lands: each real job lands once with
    one event; the forged ones add no record, object or log entry and are each counted as
    a rejection; /healthz answers 200 throughout."""
    stack.sim.config.drop_rate = 1.0  # imagedock hears only what this test sends
    stack.settings.landing_max_tries = 3  # a landing sent astray by a forgery ends soon
    real = [await stack.submit(f"real {n}") for n in range(10)]
    await stack.sim.settle()
    hooks = flood_of(stack, real, FLOOD)
    answered: list[tuple[str, int, str]] = []
    health: list[int] = []
    flooding = asyncio.Event()
    flooding.set()
    queue = list(reversed(hooks))

    async def sender() -> None:
        """One of 50 connections, each sending the next webhook once it has its answer."""
        async with wire_to(stack.receiver_url) as wire:
            while queue:
                hook = queue.pop()
                target = HOOK + (f"?ref={hook.ref}" if hook.ref else "")
                status, body = await wire.post(target, hook.body, hook.headers)
                answered.append((hook.kind, status, body.decode()))

    async def flood() -> None:
        try:
            await asyncio.gather(*(sender() for _ in range(50)))
        finally:
            flooding.clear()

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=stack.receiver_url) as client:
            while flooding.is_set():
                health.append((await client.get("/healthz")).status_code)
                await asyncio.sleep(0.05)

    async def land() -> None:
        while flooding.is_set():
            await stack.run_worker(settle=False)
            await asyncio.sleep(0.05)

    await asyncio.gather(flood(), probe(), land())
    await stack.run_worker(settle=False)

    for kind in KINDS:
        statuses = {status for k, status, _ in answered if k == kind}
        assert statuses == {ANSWERS[kind]}, (kind, statuses)
    assert len(answered) == FLOOD
    assert all(json.loads(text)["error"] for _, status, text in answered if status >= 400)
    assert len(health) > 10
    assert set(health) == {200}
    per_kind = FLOOD // len(KINDS)
    assert await rejected(stack) == {
        "bad_signature": per_kind,
        "unknown_job": 2 * per_kind,
        "other_job": per_kind,
    }
    stats = await counters(stack.redis)
    assert (stats["webhook:accepted"], stats["webhook:duplicate"]) == (10, per_kind - 10)

    # Nothing was made for, or done to, anything but the real jobs, each landed once.
    assert sorted(r.ref for r in await recent(stack.ledger, 100)) == sorted(a["ref"] for a in real)
    copies = {a["jobId"]: 0 for a in real}
    for hook in hooks:
        if hook.kind == "real":
            copies[hook.job_id] += 1
    for answer in real:
        job = await stack.job(answer["jobId"])
        assert job["status"] == "LANDED"
        assert [o["sourceUrl"] for o in job["objects"]] == stack.sim.jobs[
            answer["jobId"]
        ].image_urls
        assert len(stack.keys(answer["jobId"])) == 2
        events = await stack.log_events(answer["jobId"])
        assert events.count("webhook.accepted") == copies[answer["jobId"]]
        assert (events.count("image.stored"), events.count("job.landed")) == (1, 1)
    strangers = {hook.job_id for hook in hooks if hook.kind.startswith("unknown")}
    for stranger in strangers:
        assert await stack.ledger.by_job_id(stranger) is None
        assert stack.keys(stranger) == []
    assert sorted(e["id"] for e in stack.delivered()) == sorted(
        event_id(a["jobId"], "job.landed") for a in real
    )
