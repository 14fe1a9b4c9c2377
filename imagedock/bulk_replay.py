"""`imagedock replay --status S --since T [--until T] [--model M] [--resubmit] [--dry-run]`:
every job the filter selects replayed (landed and delivered again) or resubmitted, counted
first, then done by the worker in the background while this follows its progress."""

import asyncio
import json
import re
import sys
import time
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress

from imagedock.clients import open_deps
from receiver.schemas import BulkReplayRequest
from worker import replays
from worker.ledger.waiting import Priority
from worker.settings import Settings
from worker.validation import field_problems

AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
STILL_FOR = 30.0  # seconds without progress after which following stops: no worker runs it
LOOK_EVERY = 0.5


def moment(given: str | None) -> Any:
    """An age (`24h`, `30m`, `7d`) as the Unix time that long ago; anything else as given, for
    the request's own rules (ISO 8601 or Unix time)."""
    if given is None:
        return None
    age = AGE.fullmatch(given.strip())
    return time.time() - float(age[1]) * UNITS[age[2]] if age else given


async def bulk_replay(settings: Settings, filters: dict[str, Any], *, follow: bool) -> int:
    errors = Console(stderr=True)
    try:
        asked = BulkReplayRequest.model_validate(
            {**filters, "since": moment(filters["since"]), "until": moment(filters["until"])}
        )
    except ValidationError as exc:
        found = "; ".join(f"--{path}: {msg}" for path, msg in field_problems(exc).items())
        print(f"imagedock replay: {found}", file=sys.stderr)
        return 2
    chosen, refused = asked.filter(), asked.refusal()
    if refused is not None:
        print(f"imagedock replay: --status: {refused}", file=sys.stderr)
        return 2
    async with open_deps(settings) as deps:
        try:
            refs = await replays.select(deps.redis, chosen)
        except replays.NothingSelected as exc:
            print(f"imagedock replay: --{exc.field}: {exc}", file=sys.stderr)
            return 2
        what = "resubmit" if asked.resubmit else "replay"
        errors.print(f"{len(refs):,} {chosen.said()} to {what}")
        if asked.dry_run:
            print(json.dumps({"selected": len(refs), "filter": chosen.said(), "dryRun": True}))
            return 0
        try:
            started = await replays.start(
                deps.redis, chosen, refs, resubmit=asked.resubmit, priority=Priority[asked.priority]
            )
        except replays.AlreadyRunning as exc:
            errors.print(f"[red]not started:[/] {exc}")
            return 1
        now = await follow_progress(deps.redis, started, errors) if follow else started
    print(json.dumps(now.public()))
    return 0


async def follow_progress(
    redis: Any, started: replays.Progress, errors: Console
) -> replays.Progress:
    """The bulk replay's progress, shown until it finishes or stands still for `STILL_FOR`
    seconds (no worker is running: it goes on when one does)."""
    now, moved_at = started, time.monotonic()
    with Progress(console=errors) as bar:
        task = bar.add_task("resubmitting" if started.resubmit else "replaying", total=now.selected)
        while not now.finished:
            await asyncio.sleep(LOOK_EVERY)
            seen = await replays.progress_of(redis, started.id) or now
            if seen.done != now.done:
                moved_at = time.monotonic()
            now = seen
            bar.update(task, completed=now.done)
            if time.monotonic() - moved_at > STILL_FOR:
                errors.print(
                    f"no progress for {STILL_FOR:g} s: is a worker running? {started.id} goes "
                    "on when one is"
                )
                break
    return now
