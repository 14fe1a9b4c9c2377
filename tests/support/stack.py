"""The stack the tests drive: imagedock's receiver with the simulator behind it, a real Redis,
S3 and a webhook sink; the credentials and names it is set up with; and the settings that reach
those servers."""

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from imagedock.clients import open_deps
from receiver.app import create_app
from simulator import Simulator, SimulatorConfig
from simulator.local_s3 import LocalS3
from simulator.serving import bound_socket, serving, socket_url
from worker.deps import Deps
from worker.dispatch import Dispatcher
from worker.ledger.keys import SENDING
from worker.ledger.ledger import Ledger
from worker.polling import poll_due
from worker.runtime.tasks import build_worker
from worker.settings import Settings, load_settings
from worker.status import FINAL

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

API_KEY = "afk_test_0000000000000000000000000000000000"
API_TOKEN = "imagedock-test-token"
EVENT_SECRET = "whsec_" + base64.b64encode(b"imagedock-test-event-secret!").decode()
BUCKET = "images"
# `/v2/` callers: Apiframe clients pointed at imagedock, each with its own key.
CALLER_KEYS = {
    "alpha": "afk_caller_alpha_00000000000000000000",
    "beta": "afk_caller_beta_111111111111111111111",
}


def fast_config(**changes: object) -> SimulatorConfig:
    """Apiframe's lifecycle in milliseconds instead of seconds."""
    config = SimulatorConfig(queued_seconds=0.01, processing_seconds=0.03, seed=1)
    for name, value in changes.items():
        setattr(config, name, value)
    return config


@dataclass
class Apiframe:
    sim: Simulator
    url: str


@dataclass
class Sink:
    """A webhook receiver that records every call and answers from a script of statuses (and
    of headers to send with them)."""

    url: str
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)

    def bodies(self) -> list[bytes]:
        return [body for _, body in self.calls]


def s3_settings(server: LocalS3, **changes: Any) -> dict[str, Any]:
    """The settings that reach the local S3 server, credentials included."""
    return {
        "s3_bucket": BUCKET,
        "s3_endpoint_url": server.endpoint_url,
        "s3_region": "us-east-1",
        "s3_access_key_id": server.access_key,
        "s3_secret_access_key": server.secret_key,
        "s3_addressing_style": "path",
        **changes,
    }


@dataclass
class Stack:
    """imagedock's receiver with the simulator behind it, a real Redis, S3 and burst workers."""

    sim: Simulator
    apiframe_url: str
    settings: Settings
    receiver_url: str
    api: httpx.AsyncClient
    deps: Deps  # a worker process's clients; the receiver opens its own, as its process would
    events: Sink

    def worker_env(self, **changes: str) -> dict[str, str]:
        """The environment `imagedock worker` runs against this stack with, as deployed;
        `changes` sets more settings by name (`poll_after="1"`)."""
        settings = self.settings
        assert settings.s3_access_key_id
        assert settings.s3_secret_access_key
        env = {
            "IMAGEDOCK_REDIS_URL": settings.redis_url,
            "IMAGEDOCK_APIFRAME_URL": settings.apiframe_url,
            "IMAGEDOCK_APIFRAME_KEY": API_KEY,
            "IMAGEDOCK_PUBLIC_URL": settings.public_url or "",
            "IMAGEDOCK_SUBMIT_RATE": str(settings.submit_rate),
            "IMAGEDOCK_SUBMIT_CONCURRENCY": str(settings.submit_concurrency),
            "IMAGEDOCK_S3_BUCKET": BUCKET,
            "IMAGEDOCK_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
            "IMAGEDOCK_S3_ADDRESSING_STYLE": "path",
            "IMAGEDOCK_S3_REGION": "us-east-1",
            "IMAGEDOCK_S3_ACCESS_KEY_ID": settings.s3_access_key_id.get_secret_value(),
            "IMAGEDOCK_S3_SECRET_ACCESS_KEY": settings.s3_secret_access_key.get_secret_value(),
            "IMAGEDOCK_DOWNLOAD_HOSTS": "127.0.0.1",
            "IMAGEDOCK_EVENT_URLS": self.events.url,
            "IMAGEDOCK_EVENT_SECRET": EVENT_SECRET,
            "IMAGEDOCK_LANDING_TIMEOUT": str(settings.landing_timeout),
            "IMAGEDOCK_CALLER_KEYS": ",".join(f"{n}={k}" for n, k in CALLER_KEYS.items()),
            "IMAGEDOCK_CALLBACK_HOSTS": ",".join(settings.callback_hosts),
            "IMAGEDOCK_CLAIM": str(settings.claim),
        }
        env.update({f"IMAGEDOCK_{name.upper()}": value for name, value in changes.items()})
        return {**os.environ, **env}

    @property
    def redis(self) -> ArqRedis:
        return self.deps.redis

    @property
    def ledger(self) -> Ledger:
        return self.deps.ledger

    @property
    def s3(self) -> "S3Client":
        return self.deps.store.client

    async def accept(self, prompt: str = "a red kite over dunes", **body: Any) -> dict[str, Any]:
        """`POST /jobs`: the 202's body, the job queued."""
        response = await self.api.post("/jobs", json={"prompt": prompt, **body})
        assert response.status_code == 202, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def submit(self, prompt: str = "a red kite over dunes", **body: Any) -> dict[str, Any]:
        """`POST /jobs`, then the job once the stack's dispatcher has sent it to Apiframe (or
        it ended first): its `jobId`, `ref` and `status`."""
        accepted = await self.accept(prompt, **body)
        return await self.submitted(accepted["ref"])

    async def all_sent(self, *, within: float = 10.0) -> None:
        """Until no job waits in the submit queue, nor is being sent."""
        async with asyncio.timeout(within):
            while True:
                pace = await self.deps.submit_queue.pace()
                if not pace.waiting and not pace.sending:
                    return
                await asyncio.sleep(0.01)

    async def submitted(self, ref: str, *, within: float = 10.0) -> dict[str, Any]:
        """The job `ref` once Apiframe has it, or it has ended, and its sender is done."""
        async with asyncio.timeout(within):
            while True:
                job = await self.job(ref)
                # Its sender done with it too: every entry its send writes is written.
                done = await self.redis.zscore(SENDING, job["ref"]) is None
                if done and (job["jobId"] is not None or job["status"] in FINAL):
                    return {name: job[name] for name in ("jobId", "ref", "status")}
                await asyncio.sleep(0.01)

    async def run_worker(self, *, settle: bool = True) -> None:
        """Let the dispatcher send what is queued and Apiframe finish, then run a burst worker
        until the landing queue is empty."""
        if settle:
            await self.all_sent()
            await self.sim.settle()
        worker = build_worker(self.deps, burst=True, handle_signals=False, poll_delay=0.01)
        try:
            await worker.main()
        finally:
            await worker.release()

    async def wait_until_due(self) -> None:
        """Until the poller's first check of a job submitted now is due."""
        await asyncio.sleep(self.settings.poll_after + 0.05)

    async def poll(self) -> int:
        """One pass of the poller over the jobs due now."""
        return await poll_due(self.deps.polling)

    def delivered(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The downstream events the endpoint accepted, as received."""
        found = []
        for (headers, body), status in zip(self.events.calls, self.events.answered, strict=True):
            event = json.loads(body)
            if 200 <= status < 300 and event_type in (None, event["type"]):
                found.append({"headers": headers, "body": body, **event})
        return found

    async def job(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = (await self.api.get(f"/jobs/{job_id}")).json()
        return answer

    async def log_events(self, job_id: str) -> list[str]:
        entries = (await self.api.get(f"/jobs/{job_id}/log")).json()["entries"]
        return [entry["event"] for entry in entries]

    def object(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def keys(self, job_id: str) -> list[str]:
        listed = self.s3.list_objects_v2(
            Bucket=BUCKET, Prefix=f"{self.settings.s3_prefix}{job_id}/"
        )
        return sorted(item["Key"] for item in listed.get("Contents", []))


def stack_settings(
    redis_url: str, apiframe_url: str, sock: socket.socket, s3: LocalS3, **changes: Any
) -> Settings:
    """What every test stack's receiver and worker are set up with, and `changes`."""
    options: dict[str, Any] = {
        "redis_url": redis_url,
        "apiframe_url": apiframe_url,
        "apiframe_key": API_KEY,
        "public_url": socket_url(sock),
        "api_token": API_TOKEN,
        "download_hosts": "127.0.0.1",
        "caller_keys": ",".join(f"{name}={key}" for name, key in CALLER_KEYS.items()),
        # The test's own webhook listeners, named exactly; any other host must be public.
        "callback_hosts": "127.0.0.1,*",
        **s3_settings(s3),
    }
    return load_settings(**{**options, **changes})


@asynccontextmanager
async def stack_on(
    redis_url: str,
    s3: LocalS3,
    sink: Sink,
    *,
    apiframe_via: Callable[[str], Awaitable[str]] | None = None,
    dispatching: bool = True,
    **changes: Any,
) -> AsyncIterator[Stack]:
    """The receiver, the simulator and a worker's clients on any Redis and S3 server, with a
    dispatcher sending queued jobs to Apiframe unless `dispatching` is False; `apiframe_via`
    (and `s3_endpoint_url` in `changes`) puts something, a proxy, between imagedock and
    those."""
    simulator = Simulator(fast_config())
    async with serving(simulator.app) as apiframe_url:
        reached = await apiframe_via(apiframe_url) if apiframe_via else apiframe_url
        sock = bound_socket()
        fast = {
            "landing_backoff": 0.01,
            "poll_after": 0.2,
            "event_urls": sink.url,
            "event_secret": EVENT_SECRET,
            "event_retry_schedule": "0,0.01,0.01,0.01,0.01",
            # Apiframe's limits are the tests' of pacing to choose; elsewhere they never bind.
            "submit_rate": 1000,
            "submit_concurrency": 100_000,
        }
        settings = stack_settings(redis_url, reached, sock, s3, **{**fast, **changes})
        async with open_deps(settings) as deps:
            await deps.redis.flushdb()
            async with (
                serving(create_app(settings, open_deps), sock=sock) as receiver_url,
                httpx.AsyncClient(
                    base_url=receiver_url, headers={"Authorization": f"Bearer {API_TOKEN}"}
                ) as api,
            ):
                async with dispatcher_of(deps, dispatching):
                    yield Stack(simulator, reached, settings, receiver_url, api, deps, sink)
                await simulator.settle()
            await deps.redis.flushdb()


@asynccontextmanager
async def dispatcher_of(deps: Deps, running: bool = True) -> AsyncIterator[Dispatcher | None]:
    """A dispatcher sending the queued jobs of `deps` to Apiframe while the block runs."""
    if not running:
        yield None
        return
    dispatcher = Dispatcher(deps.submitting, credits_recheck=deps.settings.credits_recheck)

    async def run() -> None:
        """As `imagedock worker` runs it: started again after Redis is lost."""
        while True:
            try:
                await dispatcher.async_run()
                return
            except (RedisConnectionError, RedisTimeoutError):
                await asyncio.sleep(0.2)

    task = asyncio.create_task(run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await task
        await dispatcher.release()
