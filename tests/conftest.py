"""Fixtures: the Apiframe simulator served over HTTP, and a webhook sink that records its calls."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import stamina
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.serving import serving
from receiver.simulator import Simulator, SimulatorConfig
from worker.apiframe import ApiframeClient

API_KEY = "afk_test_0000000000000000000000000000000000"


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
    """A webhook receiver that records every call and answers from a script of statuses."""

    url: str
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def bodies(self) -> list[bytes]:
        return [body for _, body in self.calls]


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    """Retries keep their attempt counts but do not sleep."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
async def apiframe() -> AsyncIterator[Apiframe]:
    simulator = Simulator(fast_config())
    async with serving(simulator.app) as url:
        yield Apiframe(simulator, url)
        await simulator.settle()


@pytest.fixture
async def client(apiframe: Apiframe) -> AsyncIterator[ApiframeClient]:
    async with ApiframeClient(apiframe.url, API_KEY) as client:
        yield client


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    state = Sink(url="")

    async def record(request: Request) -> Response:
        state.calls.append((dict(request.headers), await request.body()))
        return Response(status_code=state.statuses.pop(0) if state.statuses else 200)

    app = Starlette(routes=[Route("/hook", record, methods=["POST"])])
    async with serving(app) as url:
        state.url = f"{url}/hook"
        yield state


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"X-API-Key": API_KEY}) as client:
        yield client
