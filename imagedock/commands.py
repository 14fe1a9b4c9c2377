"""Ops commands: submit from a shell, list jobs, show one, follow the log, track, replay and
redrive. Each opens the process's clients with `open_deps` and closes them when done."""

import json
import sys
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from imagedock.clients import open_deps
from worker.apiframe import MODEL, ApiframeError, GenerateRequest, GrokParams
from worker.apiframe.catalog import MODELS
from worker.ledger import Conflict
from worker.problems import field_problems
from worker.queue import enqueue_replay
from worker.records import JobRecord, LogEntry
from worker.settings import Settings
from worker.submission import submit_job, track_job

console = Console()


def moment(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def submit(
    settings: Settings,
    prompt: str,
    *,
    model: str,
    params: dict[str, Any] | None,
    image: str | None,
    aspect_ratio: str | None,
    metadata: dict[str, str],
    idempotency_key: str | None,
) -> int:
    settings.require("apiframe_key", "public_url")
    try:  # checked before anything is recorded or sent
        grok = GrokParams.model_validate({"image": image, "aspect_ratio": aspect_ratio}).wire()
        if grok and model != MODEL:
            print("imagedock submit: --image and --aspect-ratio are Grok's", file=sys.stderr)
            return 2
        request = GenerateRequest(prompt=prompt, model=model, params={**(params or {}), **grok})
    except ValidationError as exc:
        found = "; ".join(f"{path}: {msg}" for path, msg in field_problems(exc).items())
        print(f"imagedock submit: {found}", file=sys.stderr)
        return 2
    try:
        async with open_deps(settings) as deps:
            record = await submit_job(
                deps.submitter,
                request,
                metadata=metadata,
                idempotency_key=idempotency_key,
                actor="cli",
            )
    except (ApiframeError, Conflict) as exc:
        console.print(f"[red]not submitted:[/] {exc}")
        return 1
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
    async with open_deps(settings) as deps:
        console.print(jobs_table(await deps.ledger.recent(limit)))
    return 0


async def status(settings: Settings, job: str) -> int:
    async with open_deps(settings) as deps:
        record = await deps.ledger.find(job)
        if record is None:
            console.print(f"[red]no job or ref {job!r}[/]")
            return 1
        console.print_json(json.dumps(record.public()))
        for entry in await deps.ledger.job_log(record.ref):
            console.print(log_line(entry), markup=False, highlight=False)
    return 0


async def tail(settings: Settings, *, follow: bool, lines: int) -> int:
    """The global job log: the last `lines` entries, then new ones as they come."""
    async with open_deps(settings) as deps:
        ledger = deps.ledger
        recent = await ledger.latest_log(lines)
        for entry in recent:
            console.print(log_line(entry), markup=False, highlight=False)
        last = recent[-1].id if recent else "$"
        while follow:  # each wait is one blocking XREAD, not a polling loop
            for entry in await ledger.follow_log(last, block_ms=5_000, count=500):
                console.print(log_line(entry), markup=False, highlight=False)
                last = entry.id
    return 0


async def track(settings: Settings, job_id: str) -> int:
    settings.require("apiframe_key")
    async with open_deps(settings) as deps:
        record, created = await track_job(deps.submitter, job_id, "cli")
    verb = "tracking" if created else "already known as"
    console.print(f"{verb} {job_id} (ref {record.ref}, {record.status.value})")
    return 0


async def replay(settings: Settings, job: str) -> int:
    async with open_deps(settings) as deps:
        record = await deps.ledger.find(job)
        if record is None or record.job_id is None:
            console.print(f"[red]no job {job!r} with an Apiframe job id[/]")
            return 1
        queued = await enqueue_replay(deps.redis, record.job_id)
    console.print(f"replay of {record.job_id} {'queued' if queued else 'already queued'}")
    return 0


async def redrive(settings: Settings) -> int:
    async with open_deps(settings) as deps:
        count = await deps.events.redrive()
    console.print(f"{count} dead letters queued for delivery again")
    return 0


def models() -> int:
    """`imagedock models`: every model on Apiframe's image route, as imagedock submits it."""
    table = Table(title=f"{len(MODELS)} image models")
    for column in ("model", "params block", "images per job", "prompt up to"):
        table.add_column(column)
    for model in MODELS.values():
        table.add_row(model.name, model.params_key, str(model.max_images), str(model.prompt_max))
    console.print(table)
    return 0
