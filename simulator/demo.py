"""`imagedock demo`: the whole service on loopback. A simulated Apiframe, a local S3 server, the
receiver and a worker; several jobs are submitted through the receiver and land in S3."""

import asyncio
import secrets
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.table import Table
from starlette.applications import Starlette

from imagedock.clients import open_deps
from receiver.app import create_app
from simulator.app import Simulator
from simulator.config import SimulatorConfig
from simulator.local_s3 import local_s3
from simulator.serving import bound_socket, serving, socket_url
from worker.deps import Deps
from worker.runner import release, wind_down
from worker.settings import Settings
from worker.tasks import build_worker

PROMPTS = (
    "a lighthouse on a basalt cliff at dawn, long exposure",
    "an orange cat asleep on a stack of vinyl records",
    "a paper boat crossing a rain puddle, macro photograph",
    "a brutalist library lit by sodium lamps at night",
    "a hot-air balloon over terraced rice fields",
)
DEMO_KEY = "afk_demo_0000000000000000000000000000000000"
BUCKET = "imagedock-demo"
FINISHED = {"LANDED", "FAILED", "CANCELLED", "TIMED_OUT"}


async def demo(settings: Settings, *, jobs: int) -> int:
    console = Console()
    # Webhooks misbehave here as they may in production: copies, and stale progress afterwards.
    config = SimulatorConfig(
        queued_seconds=0.5,
        processing_seconds=2.5,
        duplicates=2,
        reorder=True,
        seed=7,
        image_long_side=1024,
        images_per_job=2,
    )
    simulator = Simulator(config)
    with local_s3(BUCKET) as s3:
        console.print(f"Local S3 (SeaweedFS) at [bold]{s3.endpoint_url}[/], bucket {BUCKET}")
        async with serving(simulator.app) as apiframe_url:
            console.print(f"Simulated Apiframe at [bold]{apiframe_url}[/]")
            sock = bound_socket()
            token = secrets.token_urlsafe(16)
            configured = settings.model_copy(
                update={
                    "apiframe_url": apiframe_url,
                    "apiframe_key": [SecretStr(DEMO_KEY)],
                    "public_url": socket_url(sock),
                    "api_token": SecretStr(token),
                    "s3_bucket": BUCKET,
                    "s3_endpoint_url": s3.endpoint_url,
                    "s3_region": "us-east-1",
                    "s3_access_key_id": SecretStr(s3.access_key),
                    "s3_secret_access_key": SecretStr(s3.secret_key),
                    "s3_addressing_style": "path",
                    "download_hosts": ["127.0.0.1"],
                }
            )
            # The receiver and the worker share one set of clients, as one process should.
            async with open_deps(configured) as deps:
                app = create_app(configured, lambda _: nullcontext(deps))
                return await run_services(app, sock, deps, token, console, jobs)


async def run_services(
    app: Starlette, sock: socket.socket, deps: Deps, token: str, console: Console, jobs: int
) -> int:
    """Serve the receiver on `sock` and run a worker while the jobs are submitted and watched."""
    async with (
        serving(app, sock=sock) as receiver_url,
        running_worker(deps),
        httpx.AsyncClient(
            base_url=receiver_url, headers={"Authorization": f"Bearer {token}"}
        ) as api,
    ):
        console.print(f"Receiver at [bold]{receiver_url}[/]; worker running\n")
        return await submit_and_watch(api, console, jobs)


@asynccontextmanager
async def running_worker(deps: Deps) -> AsyncIterator[None]:
    worker = build_worker(deps, handle_signals=False)
    task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        worker.handle_sig(signal.SIGTERM)
        await wind_down([task])
        await release(worker)


async def submit_and_watch(api: httpx.AsyncClient, console: Console, count: int) -> int:
    submitted: list[dict[str, Any]] = []
    run = secrets.token_hex(4)  # a fresh Idempotency-Key per run, so each run submits anew
    for n in range(count):
        body = {
            "prompt": PROMPTS[n % len(PROMPTS)],
            "grokParams": {"aspect_ratio": ("16:9", "1:1", "9:16")[n % 3]},
            "metadata": {"demo": "yes", "n": str(n)},
        }
        response = await api.post(
            "/jobs", json=body, headers={"Idempotency-Key": f"demo-{run}-{n}"}
        )
        response.raise_for_status()
        submitted.append(response.json())
    jobs: list[dict[str, Any]] = []
    with Live(console=console, refresh_per_second=8) as live:
        while True:
            jobs = [(await api.get(f"/jobs/{s['jobId']}")).json() for s in submitted]
            live.update(table(jobs))
            if all(job["status"] in FINISHED for job in jobs):
                break
            await asyncio.sleep(0.2)
    console.print()
    objects = Table(title="Objects in S3")
    for column in ("key", "type", "bytes", "sha256"):
        objects.add_column(column, overflow="fold")
    for job in jobs:
        for stored in job["objects"]:
            objects.add_row(
                stored["key"], stored["contentType"], str(stored["bytes"]), stored["sha256"][:16]
            )
    console.print(objects)
    landed = sum(job["status"] == "LANDED" for job in jobs)
    console.print(f"\n[bold]{landed} of {len(jobs)} jobs landed in S3[/]")
    return 0 if landed == len(jobs) else 1


def table(jobs: list[dict[str, Any]]) -> Table:
    view = Table(title="imagedock jobs")
    for column in ("job id", "status", "progress", "objects", "prompt"):
        view.add_column(column)
    for job in jobs:
        colour = {"LANDED": "green", "FAILED": "red"}.get(job["status"], "cyan")
        view.add_row(
            job["jobId"],
            f"[{colour}]{job['status']}[/]",
            str(job["progress"] or ""),
            str(len(job["objects"])),
            job["prompt"][:50],
        )
    return view
