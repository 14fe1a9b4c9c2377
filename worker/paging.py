"""Pages of the job log: newest first, filtered, behind an opaque cursor, one script call each.

The page is read from one sorted index (by status, by model, or every record, each scored by
creation time) and the other filters are applied in the script, so a page costs one round trip
however many records it passes over. A page stops after `SCAN_BUDGET` records whatever it found:
it may then hold fewer than `limit` jobs, with `has_more` set and a cursor to go on from.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.commands.core import AsyncScript

from worker.records import JobRecord, StoredObject
from worker.status import Status

SCAN_BUDGET = 5_000
BATCH = 200

# ARGV: index key, top score, bottom score, the cursor's ref ('' for none), limit, scan budget,
# batch, status filter, model filter, lowercased text filter ('' for none), job hash key prefix,
# objects hash key prefix. Entries scored like the cursor are taken only below its ref, so ties
# are neither skipped nor repeated. Returns {records, last score, last ref, has more}, each record
# as {flat job hash, stored objects}.
PAGE = """
local index, top, bottom, after = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local limit, budget, batch = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local status, model, text = ARGV[8], ARGV[9], ARGV[10]
local function matches(job)
  local fields = {}
  for i = 1, #job, 2 do fields[job[i]] = job[i + 1] end
  if status ~= '' and fields.status ~= status then return false end
  if model ~= '' and fields.model ~= model then return false end
  if text == '' then return true end
  for _, name in ipairs({'prompt', 'ref', 'job_id', 'error'}) do
    if fields[name] and string.find(string.lower(fields[name]), text, 1, true) then return true end
  end
  return false
end
local found, scanned, offset, last_score, last_ref = {}, 0, 0, '', ''
while #found < limit and scanned < budget do
  local rows = redis.call(
    'ZREVRANGEBYSCORE', index, top, bottom, 'WITHSCORES', 'LIMIT', offset, batch)
  if #rows == 0 then return {found, last_score, last_ref, 0} end
  for i = 1, #rows, 2 do
    local ref, score = rows[i], rows[i + 1]
    offset = offset + 1
    if after == '' or score ~= top or ref < after then
      scanned = scanned + 1
      last_score, last_ref = score, ref
      local job = redis.call('HGETALL', ARGV[11] .. ref)
      if #job > 0 and matches(job) then
        table.insert(found, {job, redis.call('HVALS', ARGV[12] .. ref)})
      end
      if #found == limit or scanned == budget then break end
    end
  end
end
local more = redis.call('ZREVRANGEBYSCORE', index, top, bottom, 'LIMIT', offset, 1)
return {found, last_score, last_ref, #more}
"""


class BadCursor(ValueError):
    """A cursor this service did not hand out."""


@dataclass(frozen=True)
class PageQuery:
    limit: int = 50
    status: Status | None = None
    model: str | None = None
    text: str | None = None  # in the prompt, ref, job id or error, ignoring case
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None


@dataclass(frozen=True)
class Page:
    records: list[JobRecord]
    next_cursor: str | None
    has_more: bool


def encode_cursor(score: str, ref: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([score, ref]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str, str]:
    """The score (as a number and as Redis wrote it) and the ref a page ended at."""
    try:
        score, ref = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
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


async def read_page(
    script: AsyncScript, query: PageQuery, *, index: str, job_prefix: str, objects_prefix: str
) -> Page:
    """One page, by `script` (the registered `PAGE`), from the sorted set `index`."""
    top, bottom, after = bounds(query)
    args: list[Any] = [
        index,
        top,
        bottom,
        after,
        query.limit,
        SCAN_BUDGET,
        BATCH,
        query.status.value if query.status else "",
        query.model or "",
        (query.text or "").lower(),
        job_prefix,
        objects_prefix,
    ]
    found, score, ref, more = await script(args=args)
    records = [record_of(job, objects) for job, objects in found]
    cursor = encode_cursor(text(score), text(ref)) if int(more) else None
    return Page(records, cursor, bool(int(more)))


def record_of(job: list[bytes], objects: list[bytes]) -> JobRecord:
    fields = [text(value) for value in job]
    raw = dict(zip(fields[::2], fields[1::2], strict=True))
    return JobRecord.from_redis(raw, [StoredObject.from_json(text(value)) for value in objects])


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
