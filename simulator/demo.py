"""`imagedock demo`: the whole service on this machine, and jobs that show what it survives.

It starts what is missing (`scripts/with-redis` has seen to Redis): a local S3 server (SeaweedFS)
unless a bucket is configured, a simulated Apiframe unless a key is, then the receiver and the
landing and polling workers, all in this process over one set of clients. It submits jobs through
the receiver's API, each with a fault of its own (`demo_faults`), shows them finish, and serves
the dashboard until Ctrl-C (`--exit` stops at the end instead).

With `IMAGEDOCK_APIFRAME_KEY` and `IMAGEDOCK_PUBLIC_URL` set it runs against the real Apiframe: no
simulator and no faults, webhooks to the public URL. `against_simulator` and `against_apiframe`
are the one place the two differ.
"""

import asyncio
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    ExitStack,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.text import Text

from imagedock.clients import open_deps
from receiver.app import create_app
from simulator.app import Simulator
from simulator.config import SimulatorConfig
from simulator.demo_database import claimed, demo_database
from simulator.demo_faults import Scenario, planned
from simulator.demo_jobs import DemoError, Tracked, submit_all, watch, webhook_figures
from simulator.demo_view import LiveView, results_table, summary, webhook_lines
from simulator.local_s3 import local_s3
from simulator.serving import bound_socket, serving, socket_url
from worker.deps import Deps
from worker.runtime.heartbeat import beating
from worker.runtime.runner import wind_down, workers_for
from worker.settings import Settings, SettingsError
from worker.structured_logging import configure_logging

DEMO_KEY = "afk_demo_0000000000000000000000000000000000"
BUCKET = "imagedock-demo"
REAL_PORT = 8000  # where IMAGEDOCK_PUBLIC_URL should lead, as for `imagedock receiver`
SIGNALS = (signal.SIGINT, signal.SIGTERM)
WIDE = 170  # columns: the results table with one S3 key a line
SIMULATED_LIMIT = 90.0  # seconds the simulated jobs may take to finish; they need about ten
# Checked a couple of seconds after a submit, not 30 s: a lost webhook is recovered as you watch.
SIMULATED_TIMINGS = {"poll_after": 2.0, "poll_max_interval": 4.0, "landing_backoff": 1.0}

World = Callable[
    [Settings, str, Console], AbstractAsyncContextManager[tuple[Settings, Simulator | None]]
]


def run(settings: Settings, *, jobs: int, port: int | None, stay: bool) -> int:
    """The command: the console tells the story, and the service's own log goes to a file of
    this run's, kept for reading afterwards."""
    handle, name = tempfile.mkstemp(prefix="imagedock-demo-", suffix=".log")
    with open(handle, "w") as log:
        configure_logging(settings.log_level, stream=log, json=True)
        try:
            return asyncio.run(demo(settings, jobs=jobs, port=port, stay=stay, log=Path(name)))
        finally:
            configure_logging("WARNING")


async def demo(settings: Settings, *, jobs: int, port: int | None, stay: bool, log: Path) -> int:
    """Run the service, the jobs and the dashboard: 0 if every job ended as its fault predicts
    (or a person stopped the demo before they had), else 1."""
    # A file or a pipe has no width of its own: wide enough for the table's S3 keys.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else WIDE)
    simulated = not settings.api_keys
    world: World = against_simulator if simulated else against_apiframe
    token = secrets.token_urlsafe(24)
    redis_url, redis_where = demo_database(settings.redis_url)
    mode = "a simulated Apiframe, faults planned job by job" if simulated else "Apiframe itself"
    console.print(Text(f"imagedock demo: {jobs} jobs against {mode}\n", "bold"))
    console.print(row("Redis", f"{redis_where} (the demo's own database, emptied at start)"))
    console.print(row("Log", f"{log} (the service's own, as JSON lines)"))
    async with stop_signals() as stopped, AsyncExitStack() as stack:
        sock = listening_socket(port if port is not None else 0 if simulated else REAL_PORT)
        stack.callback(sock.close)
        base = settings.model_copy(update={"redis_url": redis_url, "api_token": SecretStr(token)})
        configured, simulator = await stack.enter_async_context(
            world(base, socket_url(sock), console)
        )
        receiver_url = await start_service(stack, configured, sock, console, redis_where)
        console.print()
        api = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=receiver_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx.Timeout(30.0, connect=5.0),
            )
        )
        limit = SIMULATED_LIMIT if simulated else configured.job_deadline + 60
        scenarios = planned(jobs, simulated=simulated)
        verdict = await run_jobs(api, console, scenarios, simulator, stopped, limit)
        if not stopped.is_set():
            console.print()
            console.print(row("Dashboard", f"{receiver_url}/"))
            console.print(row("API token", f"{token} (the dashboard asks for it)"))
            if stay:
                console.print(Text("\nServing until Ctrl-C.", "bold"))
                await stopped.wait()
        console.print("\nStopping the receiver, the worker and everything the demo started.")
    console.print("Stopped.")
    return 1 if verdict is False else 0


async def start_service(
    stack: AsyncExitStack, settings: Settings, sock: socket.socket, console: Console, where: str
) -> str:
    """The receiver on `sock` and the landing and polling workers, sharing one set of clients
    as one process should, over the demo's emptied database; returns the receiver's URL."""
    deps = await stack.enter_async_context(open_deps(settings))
    await stack.enter_async_context(claimed(deps.redis, where))
    app = create_app(settings, lambda _: nullcontext(deps))
    receiver_url = await stack.enter_async_context(serving(app, sock=sock))
    await stack.enter_async_context(running_workers(deps))
    console.print(row("Receiver", f"{receiver_url} (the API, the webhooks, the dashboard)"))
    quiet = f"{settings.poll_after:g} s"
    console.print(row("Worker", f"landing, and polling any job with no webhook for {quiet}"))
    return receiver_url


def listening_socket(port: int) -> socket.socket:
    try:
        return bound_socket(port=port)
    except OSError as exc:
        raise DemoError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): try --port") from None


async def run_jobs(
    api: httpx.AsyncClient,
    console: Console,
    scenarios: list[Scenario],
    simulator: Simulator | None,
    stopped: asyncio.Event,
    limit: float,
) -> bool | None:
    """Submit the jobs and show them run, then every job's ending: whether all ended as their
    faults predict, or None if a stop came first."""
    view = LiveView(len(scenarios))
    jobs: list[Tracked] = []
    with Live(view, console=console, refresh_per_second=8, transient=True):
        jobs = await submit_all(api, scenarios, simulator, view.show, stopped)
        finished = await watch(api, jobs, view.show, stopped, limit)
    console.print(results_table(jobs))
    if stopped.is_set() and not (finished and len(jobs) == len(scenarios)):
        console.print(Text("Stopped before every job had finished.", "yellow"))
        return None
    if not finished:
        console.print(Text(f"Some jobs had not finished after {limit:g} s.", "red"))
    as_planned, lines = summary(jobs)
    for line in [*webhook_lines(await webhook_figures(api)), *lines]:
        console.print(line)
    return as_planned


@asynccontextmanager
async def against_simulator(
    settings: Settings, receiver_url: str, console: Console
) -> AsyncIterator[tuple[Settings, Simulator | None]]:
    """A simulated Apiframe on loopback that sends its webhooks to this receiver, with timings
    short enough to watch."""
    simulator = Simulator(
        SimulatorConfig(
            queued_seconds=0.5,
            processing_seconds=2.5,
            seed=7,
            image_long_side=1024,
            images_per_job=2,
        )
    )
    with s3_storage(settings, console) as s3:
        async with serving(simulator.app) as apiframe_url:
            console.print(row("Apiframe", f"simulated at {apiframe_url}"))
            update = {
                "apiframe_url": apiframe_url,
                "apiframe_key": [SecretStr(DEMO_KEY)],
                "public_url": receiver_url,
                "download_hosts": ["127.0.0.1"],
                **SIMULATED_TIMINGS,
                **s3,
            }
            yield settings.model_copy(update=update), simulator


@asynccontextmanager
async def against_apiframe(
    settings: Settings, receiver_url: str, console: Console
) -> AsyncIterator[tuple[Settings, Simulator | None]]:
    """The real Apiframe, as the settings name it: no simulator and no faults. Apiframe sends
    its webhooks to IMAGEDOCK_PUBLIC_URL, which must lead to this receiver."""
    if "public_url" not in settings.model_fields_set:
        raise SettingsError(
            "IMAGEDOCK_PUBLIC_URL must be set for a demo against the real Apiframe: a URL "
            f"where Apiframe reaches this receiver at {receiver_url} (a tunnel, for example)"
        )
    with s3_storage(settings, console) as s3:
        console.print(row("Apiframe", f"{settings.apiframe_url} (every job spends credits)"))
        webhooks = f"to {settings.public_url}, which must lead to {receiver_url}"
        console.print(row("Webhooks", webhooks))
        yield settings.model_copy(update=s3), None


@contextmanager
def s3_storage(settings: Settings, console: Console) -> Iterator[dict[str, Any]]:
    """The configured bucket if there is one, else a SeaweedFS of the demo's own, stopped and
    deleted at the end; yields the settings that reach it."""
    if settings.s3_bucket:
        console.print(row("S3", f"s3://{settings.s3_bucket}/{settings.s3_prefix}"))
        yield {}
        return
    with ExitStack() as stack:
        with console.status("Starting a local S3 server (SeaweedFS)"):
            s3 = stack.enter_context(local_s3(BUCKET))
        console.print(row("S3", f"SeaweedFS at {s3.endpoint_url}, bucket {BUCKET}"))
        yield {
            "s3_bucket": BUCKET,
            "s3_endpoint_url": s3.endpoint_url,
            "s3_region": "us-east-1",
            "s3_access_key_id": SecretStr(s3.access_key),
            "s3_secret_access_key": SecretStr(s3.secret_key),
            "s3_addressing_style": "path",
        }


@asynccontextmanager
async def running_workers(deps: Deps) -> AsyncIterator[None]:
    """The landing and the polling worker, as `imagedock worker` runs them, beating as it does."""
    workers = [build() for build in workers_for(deps).values()]
    tasks = [asyncio.create_task(worker.async_run()) for worker in workers]
    try:
        async with beating(deps.redis):
            yield
    finally:
        for worker in workers:
            worker.stop(wait=0)
        await wind_down(tasks)
        for worker in workers:
            await worker.release()


@asynccontextmanager
async def stop_signals() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM, for an orderly stop. The in-loop uvicorn servers hear
    the signal too and stop; each passes it on when done, and it ends here, not as a traceback."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in SIGNALS:
        loop.add_signal_handler(signum, stopped.set)
    try:
        yield stopped
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)


def row(name: str, text: str) -> Text:
    """One line of the demo's set-up: a name and what it is (as plain text, never markup)."""
    return Text.assemble((f"  {name:<11}", "bold"), text)
