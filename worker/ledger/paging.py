"""Pages of the job log: newest first, filtered, behind an opaque cursor, one script call each.

The page is read from one sorted index (by status, by model, or every record, each scored by
creation time) and the other filters are applied in the script, so a page costs one round trip
however many records it passes over. A page stops after `SCAN_BUDGET` records whatever it found:
it may then hold fewer than `limit` jobs, with `has_more` set and a cursor to go on from.
"""

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.commands.core import AsyncScript

from worker.ledger.keys import is_ref
from worker.ledger.records import JobRecord, decoded, pairs, text
from worker.status import Status

SCORE = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?(e[+-]?[0-9]{1,3})?")  # as Redis writes one
SCAN_BUDGET = 5_000  # records a page passes over at most
CALL_BUDGET = 500  # of them, in one script call
BATCH = 200


class BadCursor(ValueError):
    """A cursor this service did not hand out."""


@dataclass(frozen=True)
class PageQuery:
    limit: int = 50
    status: Status | None = None
    statuses: tuple[Status, ...] = ()  # any of these, as one of Apiframe's statuses means
    model: str | None = None
    text: str | None = None  # in the prompt, ref, job id or error, ignoring case
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    caller: str | None = None  # only the jobs this `/v2/` caller submitted


@dataclass(frozen=True)
class Page:
    records: list[JobRecord]
    next_cursor: str | None
    has_more: bool


def encode_cursor(score: str, ref: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([score, ref]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str, str]:
    """The score (as a number and as Redis wrote it) and the ref a page ended at. Anything but
    a number as Redis writes one (`nan`, `1_000`, which Python reads and Redis refuses) and a
    ref's shape is refused here, as the caller's mistake it is."""
    try:
        score, ref = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (SCORE.fullmatch(str(score)) and is_ref(str(ref))):
            raise ValueError(cursor)
        return float(score), str(score), str(ref)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadCursor("cursor is not one this service handed out") from exc


def bounds(query: PageQuery) -> tuple[str, str, str]:
    """The score range to read and the ref to go on below, from the time filters and cursor."""
    top = str(query.until.timestamp()) if query.until else "+inf"
    bottom = str(query.since.timestamp()) if query.since else "-inf"
    if query.cursor is None:
        return top, bottom, ""
    score, written, ref = decode_cursor(query.cursor)
    if query.until and query.until.timestamp() < score:
        return top, bottom, ""
    return written, bottom, ref


Resolve = Callable[[dict[str, str], list[str]], Awaitable[JobRecord]]


async def read_page(
    script: AsyncScript,
    query: PageQuery,
    *,
    index: str,
    job_prefix: str,
    objects_prefix: str,
    resolve: Resolve,
) -> Page:
    """One page, by `script` (the registered `page.lua`), from the sorted set `index`: a call
    passes over at most `CALL_BUDGET` records, so Redis serves others between them. `resolve`
    makes each record of its hash and its objects (a compacted one's from its timeline)."""
    top, bottom, after = bounds(query)
    statuses = (query.status,) if query.status else query.statuses
    filters = [
        " ".join(status.value for status in statuses),
        query.model or "",
        (query.text or "").lower(),
        job_prefix,
        objects_prefix,
    ]
    records: list[JobRecord] = []
    scanned, more = 0, False
    while True:
        budget = min(CALL_BUDGET, SCAN_BUDGET - scanned)
        wanted = query.limit - len(records)
        args: list[Any] = [index, top, bottom, after, wanted, budget, BATCH, *filters]
        found, score, ref, has_more, passed = await script(args=args)
        records += await asyncio.gather(
            *(
                resolve(decoded(pairs(job)), [text(o) or "" for o in objects])
                for job, objects in found
            )
        )
        scanned, more = scanned + int(passed), bool(int(has_more))
        if int(passed):  # on from where this call stopped
            top, after = text(score) or "", text(ref) or ""
        if not (more and int(passed)) or len(records) == query.limit or scanned >= SCAN_BUDGET:
            break
    return Page(records, encode_cursor(top, after) if more else None, more)
