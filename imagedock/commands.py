"""Ops commands: submit from a shell, list jobs, show one, follow the log, track, replay and
redrive. Each opens the process's clients with `open_deps` and closes them when done."""

import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from imagedock.clients import open_deps
from receiver.batch import accept_item
from receiver.schemas import BatchOutcome, JobView
from worker.apiframe import MODEL, ApiframeRequest, GrokParams
from worker.apiframe.catalog import GENERATE, OPERATIONS
from worker.apiframe.models import ACTION_FIELDS
from worker.ledger.admission import NotAdmitted
from worker.ledger.ledger import Conflict
from worker.ledger.log import WARNINGS, LogEntry
from worker.ledger.paging import PageQuery
from worker.ledger.records import JobRecord
from worker.ledger.waiting import Priority
from worker.references import BadReference
from worker.runtime.queue import enqueue_replay
from worker.settings import Settings
from worker.status import Status
from worker.submission import BadParent, NotWaiting, accept_job, cancel_waiting, track_job
from worker.validation import field_problems

console = Console()
COLOURS = {
    Status.LANDED: "green",
    Status.FAILED: "red",
    Status.TIMED_OUT: "red",
    Status.CANCELLED: "yellow",
}


def moment(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def submit(
    settings: Settings,
    prompt: str | None,
    *,
    operation: str,
    model: str | None,
    params: dict[str, Any] | None,
    action: str | None,
    parent: str | None,
    image: str | None,
    aspect_ratio: str | None,
    metadata: dict[str, str],
    idempotency_key: str | None,
    priority: Priority = Priority.normal,
) -> int:
    settings.require("apiframe_key", "public_url")
    try:  # checked before anything is recorded or sent
        grok = GrokParams.model_validate({"image": image, "aspect_ratio": aspect_ratio}).wire()
        if grok and (operation != GENERATE or (model or MODEL) != MODEL):
            print("imagedock submit: --image and --aspect-ratio are Grok's", file=sys.stderr)
            return 2
        given = {
            "operation": operation,
            "prompt": prompt,
            "model": model,
            "params": {**(params or {}), **grok} or None,
            "action": action,
            "parentJobId": parent,
        }
        request = ApiframeRequest.model_validate(
            {name: value for name, value in given.items() if value is not None}
        )
    except ValidationError as exc:
        found = "; ".join(f"{path}: {msg}" for path, msg in field_problems(exc).items())
        print(f"imagedock submit: {found}", file=sys.stderr)
        return 2
    try:
        async with open_deps(settings) as deps:
            record = await accept_job(
                deps.submitting,
                request,
                metadata=metadata,
                idempotency_key=idempotency_key,
                actor="cli",
                priority=priority,
            )
    except (BadParent, BadReference) as exc:
        print(f"imagedock submit: {exc}", file=sys.stderr)
        return 2
    except (Conflict, NotAdmitted) as exc:
        console.print(f"[red]not accepted:[/] {exc}")
        return 1
    print(json.dumps({"jobId": record.job_id, "ref": record.ref, "status": record.status}))
    return 0


async def submit_file(settings: Settings, path: Path) -> int:
    """`imagedock submit --from FILE.jsonl`: one job a line, as `POST /jobs/batch` takes each
    (an `idempotencyKey` makes a line safe to send again). Each line's outcome goes to stdout
    as a JSON line, the progress to stderr; exits 1 if any line was refused."""
    settings.require("apiframe_key", "public_url")
    try:
        lines = [(n, line) for n, line in enumerate(path.open(), 1) if line.strip()]
    except OSError as exc:
        print(f"imagedock submit: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    refused = 0
    errors = Console(stderr=True)
    async with open_deps(settings) as deps:
        with Progress(console=errors) as progress:
            task = progress.add_task("accepting", total=len(lines))
            for n, line in lines:
                try:
                    item = json.loads(line)
                except ValueError:
                    outcome = BatchOutcome(code=400, error="not JSON")
                else:
                    outcome = await accept_item(deps.submitting, item, actor="cli")
                refused += outcome.ref is None
                print(json.dumps({"line": n, **outcome.body()}), flush=True)
                progress.advance(task)
    errors.print(f"{len(lines) - refused} accepted, {refused} refused")
    return 1 if refused else 0


def jobs_table(records: list[JobRecord], title: str) -> Table:
    table = Table(title=title)
    for column in ("created", "job id", "model", "status", "via", "files", "prompt", "error"):
        table.add_column(column, overflow="fold")
    for record in records:
        colour = COLOURS.get(record.status, "cyan")
        table.add_row(
            moment(record.created_at),
            record.job_id or f"(ref {record.ref})",
            record.model,
            f"[{colour}]{record.status.value}[/]",
            record.via or "",
            str(len(record.objects)),
            record.prompt[:60],
            record.error or "",
        )
    return table


def log_line(entry: LogEntry) -> str:
    detail = " ".join(f"{k}={v}" for k, v in entry.detail.items())
    who = entry.job_id or entry.ref or "-"
    return f"{moment(entry.ts)}  {entry.actor:<8} {entry.event:<18} {who}  {detail}"


def as_lines(as_json: bool) -> bool:
    """JSON lines when asked, or when the output goes to a pipe or a file rather than a person."""
    return as_json or not sys.stdout.isatty()


def print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


def show_entry(entry: LogEntry, lines: bool) -> None:
    if lines:
        print_json(entry.public())
    else:
        style = "red" if entry.event in WARNINGS else None
        console.print(log_line(entry), markup=False, highlight=False, style=style)


async def jobs(
    settings: Settings, limit: int, *, status: str | None, model: str | None, as_json: bool
) -> int:
    query = PageQuery(limit=limit, status=Status(status) if status else None, model=model)
    async with open_deps(settings) as deps:
        records = (await deps.ledger.page(query)).records
    if as_lines(as_json):
        for record in records:
            print_json(JobView.of(record).body())
        return 0
    which = " ".join(word for word in (status, model) if word)
    console.print(
        jobs_table(records, f"{len(records)} most recent {which} jobs".replace("  ", " "))
    )
    return 0


async def status(settings: Settings, job: str | None, *, as_json: bool) -> int:
    if job is None:
        return await pace(settings, as_json=as_json)
    async with open_deps(settings) as deps:
        record = await deps.ledger.find(job)
        if record is None:
            console.print(f"[red]no job or ref {job!r}[/]")
            return 1
        entries = await deps.ledger.history.job(record.ref)
    view = JobView.of(record).body()
    if as_lines(as_json):
        print_json({**view, "log": [entry.public() for entry in entries]})
        return 0
    console.print_json(json.dumps(view))
    for entry in entries:
        show_entry(entry, lines=False)
    return 0


async def pace(settings: Settings, *, as_json: bool) -> int:
    """The submit queue: what waits, per caller, what Apiframe has, and the pace in force."""
    async with open_deps(settings) as deps:
        now = await deps.submit_queue.pace()
    limit = f"{settings.submit_rate:g}/s and {settings.submit_concurrency} in flight"
    if as_lines(as_json):
        print_json({**asdict(now), "limits": limit})
        return 0
    table = Table(title="submit queue", show_header=False)
    for caller, count in now.waiting.items():
        table.add_row(f"waiting: {caller}", str(count))
    table.add_row("waiting in all", str(sum(now.waiting.values())))
    table.add_row("being sent", str(now.sending))
    table.add_row("at Apiframe, unfinished", str(now.in_flight))
    table.add_row("submits a second in force", f"{now.rate:.2f} (limits: {limit})")
    table.add_row("pace", now.summary() or "[green]steady[/]")
    for caller, credits in now.credits_today.items():
        cap = settings.caller_credits.get(caller)
        table.add_row(
            f"credits today: {caller}", f"{credits:g} of {cap:g}" if cap else f"{credits:g}"
        )
    console.print(table)
    return 0


async def cancel(settings: Settings, job: str) -> int:
    async with open_deps(settings) as deps:
        record = await deps.ledger.find(job)
        if record is None:
            console.print(f"[red]no job or ref {job!r}[/]")
            return 1
        try:
            record = await cancel_waiting(deps.submitting, record, "cli")
        except NotWaiting as exc:
            console.print(f"[red]not cancelled:[/] {exc}")
            return 1
    console.print(f"cancelled {record.ref}: {record.error}")
    return 0


async def tail(settings: Settings, *, follow: bool, lines: int, as_json: bool) -> int:
    """The global job log: the last `lines` entries, then new ones as they come."""
    json_lines = as_lines(as_json)
    async with open_deps(settings) as deps:
        ledger = deps.ledger
        recent = await ledger.history.latest(lines)
        for entry in recent:
            show_entry(entry, json_lines)
        last = recent[-1].id if recent else await ledger.history.last_id()
        while follow:  # each wait is one blocking XREAD, not a polling loop
            for entry in await ledger.history.follow(last, block_ms=5_000, count=500):
                show_entry(entry, json_lines)
                last = entry.id
    return 0


async def track(settings: Settings, job_id: str) -> int:
    settings.require("apiframe_key")
    async with open_deps(settings) as deps:
        record, created = await track_job(deps.submitting, job_id, "cli")
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


def models(operation: str | None = None) -> int:
    """`imagedock models`: Apiframe's ten job routes; with `--operation`, every model on that
    route (or every action, for an action route), as imagedock submits it."""
    if operation is None:
        table = Table(title=f"{len(OPERATIONS)} job routes: `imagedock models --operation ROUTE`")
        for column in ("operation", "makes", "models or actions", "prompt"):
            table.add_column(column)
        for route in OPERATIONS.values():
            made = ", ".join(route.actions) if route.acts_on_parent else f"{len(route.models)}"
            taken = {True: "required", False: "none", None: "per action"}[route.prompt]
            table.add_row(route.path, route.makes, made, taken)
        console.print(table)
        return 0
    route = OPERATIONS[operation]
    if route.acts_on_parent:
        table = Table(title=f"{operation}: actions on a parent job (--parent)")
        for column in ("action", "needs", "may take"):
            table.add_column(column)
        for action in route.actions:
            needed, optional = ACTION_FIELDS[action]
            table.add_row(action, ", ".join(sorted(needed)), ", ".join(sorted(optional)))
        console.print(table)
        return 0
    table = Table(title=f"{operation}: {len(route.models)} models")
    for column in ("model", "params block", "files per job", "prompt up to"):
        table.add_column(column)
    for model in route.models.values():
        prompt = str(model.prompt_max) if route.prompt else "none"
        table.add_row(model.name, model.params_key, str(model.max_images), prompt)
    console.print(table)
    return 0
