"""Fixtures: the Apiframe simulator served over HTTP, a real Redis and S3 server, a webhook sink
that records its calls, the whole stack with its clients opened by `open_deps`, and a
redis-server of a test's own. What they are made of lives in `tests/support`."""

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import stamina
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imagedock.clients import open_deps
from simulator import Simulator
from simulator.local_s3 import LocalS3, local_s3
from simulator.serving import serving
from tests.support.redis_server import PrivateRedis
from tests.support.stack import API_KEY, BUCKET, Apiframe, Sink, Stack, fast_config, stack_on
from worker.apiframe import ApiframeClient
from worker.deps import Deps
from worker.settings import load_settings


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    """Retries keep their attempt counts but do not sleep."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
def no_imagedock_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No IMAGEDOCK_* variable of the machine running the tests reaches the settings."""
    for name in os.environ:
        if name.startswith("IMAGEDOCK_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def apiframe() -> AsyncIterator[Apiframe]:
    simulator = Simulator(fast_config())
    async with serving(simulator.app) as url:
        yield Apiframe(simulator, url)
        await simulator.settle()


@pytest.fixture
async def client(apiframe: Apiframe, redis_url: str) -> AsyncIterator[ApiframeClient]:
    settings = load_settings(redis_url=redis_url, apiframe_url=apiframe.url, apiframe_key=API_KEY)
    async with open_deps(settings) as deps:
        yield deps.apiframe


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    state = Sink(url="")

    async def record(request: Request) -> Response:
        state.calls.append((dict(request.headers), await request.body()))
        status = state.statuses.pop(0) if state.statuses else 200
        headers = state.headers.pop(0) if state.headers else {}
        state.answered.append(status)
        return Response(status_code=status, headers=headers)

    app = Starlette(routes=[Route("/hook", record, methods=["POST"])])
    async with serving(app) as url:
        state.url = f"{url}/hook"
        yield state


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"X-API-Key": API_KEY}) as client:
        yield client


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis that scripts/with-redis found or started, on a database of the tests' own."""
    base = os.environ.get("IMAGEDOCK_REDIS_URL", "redis://127.0.0.1:6379/0")
    database = os.environ.get("IMAGEDOCK_TEST_REDIS_DB", "15")
    return base.rsplit("/", 1)[0] + f"/{database}" if base.count("/") > 2 else f"{base}/{database}"


@pytest.fixture
async def deps(redis_url: str) -> AsyncIterator[Deps]:
    """The clients `open_deps` makes from the defaults, on the tests' Redis database, emptied
    before and after."""
    async with open_deps(load_settings(redis_url=redis_url)) as deps:
        await deps.redis.flushdb()
        yield deps
        await deps.redis.flushdb()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3]:
    with local_s3(BUCKET) as server:
        yield server


@pytest.fixture
async def stack(redis_url: str, s3_server: LocalS3, sink: Sink) -> AsyncIterator[Stack]:
    async with stack_on(redis_url, s3_server, sink) as found:
        yield found


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
