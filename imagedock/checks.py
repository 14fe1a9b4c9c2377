"""`imagedock check`: try Redis, Apiframe, S3, the receiver and the workers' heartbeats with the
configured settings. `imagedock check --worker` is a worker container's probe: Redis, and a fresh
heartbeat from a worker on this host."""

import socket
import time

import httpx
import redis.exceptions
from rich.console import Console
from rich.table import Table

from imagedock.clients import open_deps
from worker.apiframe import ApiframeError
from worker.deps import Deps
from worker.landing.errors import LandingError
from worker.runtime.heartbeat import FRESH, alive, last_beats
from worker.settings import Settings

Result = tuple[str, bool, str]
PARTS = ("Apiframe", "S3", "Receiver", "Worker")


async def check(settings: Settings, *, worker_only: bool = False) -> int:
    """Say which dependencies answer; 0 only if every one does."""
    where = settings.redis_url.split("@")[-1]  # never the password
    parts = ("Worker",) if worker_only else PARTS
    try:
        async with open_deps(settings) as deps:
            await deps.redis.ping()
            results = [("Redis", True, where)]
            if not worker_only:
                results += [
                    await check_apiframe(deps),
                    await check_s3(deps),
                    await check_receiver(deps),
                ]
            results.append(await check_worker(deps, socket.gethostname() if worker_only else None))
    except (redis.exceptions.RedisError, OSError) as exc:
        results = [("Redis", False, f"{where}: {exc.__class__.__name__}")]
        results += [(part, False, "not checked without Redis") for part in parts]
    table = Table(title="imagedock check")
    for column in ("part", "ok", "detail"):
        table.add_column(column)
    for part, ok, detail in results:
        table.add_row(part, "[green]yes[/]" if ok else "[red]no[/]", detail)
    Console().print(table)
    return 0 if all(ok for _, ok, _ in results) else 1


async def check_apiframe(deps: Deps) -> Result:
    if deps.apiframe_client is None:
        return ("Apiframe", False, "IMAGEDOCK_APIFRAME_KEY is not set")
    try:
        me = await deps.apiframe_client.me()
    except ApiframeError as exc:
        return ("Apiframe", False, str(exc))
    return ("Apiframe", True, f"team {(me.get('team') or {}).get('id', '?')}")


async def check_s3(deps: Deps) -> Result:
    store = deps.object_store
    if store is None:
        return ("S3", False, "IMAGEDOCK_S3_BUCKET is not set")
    try:
        await store.check_bucket()
    except LandingError as exc:
        return ("S3", False, f"s3://{store.bucket}: {exc}")
    return ("S3", True, f"s3://{store.bucket}/{store.prefix}")


async def check_receiver(deps: Deps) -> Result:
    url = deps.settings.public_url
    try:
        health = await deps.http.get(f"{url}/healthz", timeout=5)
    except httpx.HTTPError as exc:
        return ("Receiver", False, f"{url}: {exc.__class__.__name__}")
    return ("Receiver", health.status_code == 200, url)


async def check_worker(deps: Deps, host: str | None) -> Result:
    """A worker (on `host`, if given) whose heartbeat is fresh."""
    beats = {
        member: at
        for member, at in (await last_beats(deps.redis)).items()
        if host is None or member.rsplit(":", 1)[0] == host
    }
    now = time.time()
    live = alive(beats, now)
    where = f" on {host}" if host else ""
    if live:
        return ("Worker", True, f"{len(live)} alive{where}: {', '.join(sorted(live))}")
    if not beats:
        return ("Worker", False, f"no worker{where} has sent a heartbeat")
    since = now - max(beats.values())
    return ("Worker", False, f"no heartbeat{where} for {since:.0f} s (fresh is {FRESH:.0f} s)")
