"""Ops commands: submit from a shell, list jobs, show one, follow the log, check the set-up."""

import asyncio
import json
from datetime import UTC, datetime

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from worker.apiframe import ApiframeClient, ApiframeError, GenerateRequest, GrokParams
from worker.events import Events
from worker.ledger import Conflict, Ledger
from worker.queue import connect, enqueue_replay
from worker.records import JobRecord, LogEntry
from worker.settings import Settings
from worker.storage import make_client
from worker.submission import Submitter, submit_job, track_job

console = Console()


def moment(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def submit(
    settings: Settings,
    prompt: str,
    *,
    image: str | None,
    aspect_ratio: str | None,
    metadata: dict[str, str],
    idempotency_key: str | None,
) -> int:
    settings.require("apiframe_key", "public_url")
    params = GrokParams.model_validate({"image": image, "aspect_ratio": aspect_ratio})
    request = GenerateRequest(prompt=prompt, params=params)
    redis = await connect(settings.redis_url)
    try:
        async with ApiframeClient(settings.apiframe_url, settings.api_keys[0]) as apiframe:
            deps = Submitter.for_settings(redis, apiframe, settings)
            record = await submit_job(
                deps, request, metadata=metadata, idempotency_key=idempotency_key, actor="cli"
            )
    except (ApiframeError, Conflict) as exc:
        console.print(f"[red]not submitted:[/] {exc}")
        return 1
    finally:
        await redis.aclose()
    print(json.dumps({"jobId": record.job_id, "ref": record.ref, "status": record.status}))
    return 0


def jobs_table(records: list[JobRecord]) -> Table:
    table = Table(title=f"{len(records)} most recent jobs")
    for column in ("created", "job id", "status", "images", "prompt", "error"):
        table.add_column(column, overflow="fold")
    colours = {"LANDED": "green", "FAILED": "red", "TIMED_OUT": "red", "CANCELLED": "yellow"}
    for record in records:
        colour = colours.get(record.status.value, "cyan")
        table.add_row(
            moment(record.created_at),
            record.job_id or f"(ref {record.ref})",
            f"[{colour}]{record.status.value}[/]",
            str(len(record.objects)),
            record.prompt[:60],
            record.error or "",
        )
    return table


def log_line(entry: LogEntry) -> str:
    detail = " ".join(f"{k}={v}" for k, v in entry.detail.items())
    who = entry.job_id or entry.ref or "-"
    return f"{moment(entry.ts)}  {entry.actor:<8} {entry.event:<18} {who}  {detail}"


async def jobs(settings: Settings, limit: int) -> int:
    redis = await connect(settings.redis_url)
    try:
        console.print(jobs_table(await Ledger(redis).recent(limit)))
    finally:
        await redis.aclose()
    return 0


async def status(settings: Settings, job: str) -> int:
    redis = await connect(settings.redis_url)
    try:
        ledger = Ledger(redis)
        record = await ledger.find(job)
        if record is None:
            console.print(f"[red]no job or ref {job!r}[/]")
            return 1
        console.print_json(json.dumps(record.public()))
        for entry in await ledger.job_log(record.ref):
            console.print(log_line(entry), markup=False, highlight=False)
    finally:
        await redis.aclose()
    return 0


async def tail(settings: Settings, *, follow: bool, lines: int) -> int:
    """The global job log: the last `lines` entries, then new ones as they come."""
    redis = await connect(settings.redis_url)
    ledger = Ledger(redis)
    try:
        recent = await ledger.latest_log(lines)
        for entry in recent:
            console.print(log_line(entry), markup=False, highlight=False)
        last = recent[-1].id if recent else "-"
        while follow:
            fresh = await ledger.global_log(after=last, count=500)
            for entry in fresh:
                console.print(log_line(entry), markup=False, highlight=False)
                last = entry.id
            if not fresh:
                await asyncio.sleep(0.5)
    finally:
        await redis.aclose()
    return 0


async def check(settings: Settings) -> int:
    """Try each dependency with the configured settings and say which ones answer."""
    results: list[tuple[str, bool, str]] = []
    try:
        redis = await connect(settings.redis_url)
        await redis.ping()
        await redis.aclose()
        results.append(("Redis", True, settings.redis_url.split("@")[-1]))
    except Exception as exc:
        results.append(("Redis", False, exc.__class__.__name__))
    if settings.api_keys:
        try:
            async with ApiframeClient(settings.apiframe_url, settings.api_keys[0]) as client:
                me = await client.me()
            results.append(("Apiframe", True, f"team {me.get('team', {}).get('id', '?')}"))
        except ApiframeError as exc:
            results.append(("Apiframe", False, str(exc)))
    else:
        results.append(("Apiframe", False, "IMAGEDOCK_APIFRAME_KEY is not set"))
    results.append(await asyncio.to_thread(check_s3, settings))
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            health = await http.get(f"{settings.public_url}/healthz")
        results.append(("Receiver", health.status_code == 200, settings.public_url))
    except httpx.HTTPError as exc:
        results.append(("Receiver", False, f"{settings.public_url}: {exc.__class__.__name__}"))
    table = Table(title="imagedock check")
    for column in ("part", "ok", "detail"):
        table.add_column(column)
    for part, ok, detail in results:
        table.add_row(part, "[green]yes[/]" if ok else "[red]no[/]", detail)
    console.print(table)
    return 0 if all(ok for _, ok, _ in results) else 1


def check_s3(settings: Settings) -> tuple[str, bool, str]:
    if not settings.s3_bucket:
        return ("S3", False, "IMAGEDOCK_S3_BUCKET is not set")
    try:
        make_client(settings).head_bucket(Bucket=settings.s3_bucket)
    except (BotoCoreError, ClientError) as exc:
        return ("S3", False, f"s3://{settings.s3_bucket}: {exc.__class__.__name__}")
    return ("S3", True, f"s3://{settings.s3_bucket}/{settings.s3_prefix}")


async def track(settings: Settings, job_id: str) -> int:
    redis = await connect(settings.redis_url)
    try:
        async with ApiframeClient(settings.apiframe_url, settings.api_keys[0]) as apiframe:
            deps = Submitter.for_settings(redis, apiframe, settings)
            record, created = await track_job(deps, job_id, "cli")
    finally:
        await redis.aclose()
    verb = "tracking" if created else "already known as"
    console.print(f"{verb} {job_id} (ref {record.ref}, {record.status.value})")
    return 0


async def replay(settings: Settings, job: str) -> int:
    redis = await connect(settings.redis_url)
    try:
        record = await Ledger(redis).find(job)
        if record is None or record.job_id is None:
            console.print(f"[red]no job {job!r} with an Apiframe job id[/]")
            return 1
        queued = await enqueue_replay(redis, record.job_id)
    finally:
        await redis.aclose()
    console.print(f"replay of {record.job_id} {'queued' if queued else 'already queued'}")
    return 0


async def redrive(settings: Settings) -> int:
    redis = await connect(settings.redis_url)
    try:
        ledger = Ledger(redis)
        events = Events(redis, ledger, tuple(settings.event_urls), settings.events_stream_maxlen)
        count = await events.redrive()
    finally:
        await redis.aclose()
    console.print(f"{count} dead letters queued for delivery again")
    return 0
