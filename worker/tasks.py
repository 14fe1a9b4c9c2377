"""The arq worker: thin task functions over the domain, and the worker's settings.

Landing's settings, and why:
- `job_timeout` 90 s: four 50 MiB images fit easily, and a worker that dies mid-landing has its job
  re-run when arq's claim expires, timeout + 10 s later: under two minutes.
- `poll_delay` 0.05 s: arq's 0.5 s default caps a worker near 200 jobs/s and adds latency.
- `max_tries` 30 with backoff from 5 s to 5 min: about two hours of outage, and every restart counts
  as a try in arq, so a run of deploys cannot exhaust it.
- `keep_result` 0: a webhook arriving after a landing finished runs a cheap no-op instead of being
  silently refused by arq for an hour.
"""

from typing import Any

import httpx
import structlog
from arq import Retry, Worker
from arq.worker import func

from worker.apiframe import ApiframeClient
from worker.download import Downloader, HostPolicy
from worker.errors import TransientError
from worker.landing import Landing, NotReady, fail, land_job
from worker.ledger import Ledger
from worker.queue import LAND, LANDING_QUEUE, deserialize, redis_settings, serialize
from worker.settings import Settings
from worker.storage import ObjectStore

LANDING_TIMEOUT = 90
LANDING_MAX_TRIES = 30
NOT_READY_TRIES = 5
log = structlog.get_logger("worker")


def backoff(base: float, attempt: int, retry_after: float | None = None) -> float:
    wait: float = min(base * 2.0 ** (attempt - 1), 300.0)
    return max(wait, retry_after or 0.0)


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["http"] = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=10.0),
        headers={"User-Agent": "imagedock"},
        follow_redirects=False,  # each hop is checked against the host policy
    )
    ctx["landing"] = Landing(
        ledger=Ledger(ctx["redis"]),
        apiframe=ApiframeClient(settings.apiframe_url, settings.api_keys[0]),
        downloader=Downloader(
            ctx["http"], HostPolicy(settings.download_hosts), settings.max_image_bytes
        ),
        store=ObjectStore(settings),
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    landing: Landing | None = ctx.get("landing")
    if landing is not None:
        await landing.apiframe.aclose()
        landing.store.close()
    if "http" in ctx:
        await ctx["http"].aclose()


async def land(ctx: dict[str, Any], job_id: str) -> str:
    deps: Landing = ctx["landing"]
    attempt: int = ctx["job_try"]
    with structlog.contextvars.bound_contextvars(job_id=job_id, attempt=attempt):
        try:
            return (await land_job(deps, job_id)).value
        except TransientError as exc:
            limit = NOT_READY_TRIES if isinstance(exc, NotReady) else LANDING_MAX_TRIES
            record = await deps.ledger.by_job_id(job_id)
            if record is None:
                raise
            if attempt >= limit:
                await fail(deps.ledger, record, f"gave up after {attempt} tries: {exc}", "worker")
                return "FAILED"
            wait = backoff(ctx["settings"].landing_backoff, attempt, exc.retry_after)
            await deps.ledger.log(
                record.ref,
                job_id,
                "worker",
                "landing.retry",
                reason=str(exc),
                attempt=attempt,
                retry_in=wait,
            )
            log.info("landing.retry", reason=str(exc), retry_in=wait)
            raise Retry(defer=wait) from exc


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """The landing worker; tests pass `burst=True, handle_signals=False`."""
    options: dict[str, Any] = {
        "functions": [func(land, name=LAND, keep_result=0, max_tries=LANDING_MAX_TRIES)],
        "queue_name": LANDING_QUEUE,
        "redis_settings": redis_settings(settings.redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "job_timeout": LANDING_TIMEOUT,
        "poll_delay": 0.05,
        "max_tries": LANDING_MAX_TRIES,
        "max_jobs": 20,
        "health_check_interval": 30,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        **overrides,
    }
    return Worker(**options)
