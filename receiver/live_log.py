"""The live job log, read once per process and fanned out to every stream.

One task follows the global log with a blocking XREAD (one Redis connection, however many
streams are open). What one read returns is encoded once, as one chunk of Server-Sent Events,
and that chunk is offered to every subscriber; the reader then waits `GATHER` before reading
again, so a busy log reaches each stream in a few chunks a second, not an entry at a time (the
cost of a stream is its sends, not its entries). A subscriber that falls `QUEUE` entries behind
is dropped: its stream ends at once, and the client resumes with `Last-Event-ID` from where it
was. A subscriber that starts in the past catches up from Redis a page at a time, then takes its
queue, skipping what it has already sent. At most `IMAGEDOCK_STREAMS_MAX` streams are served at
once; past that a stream is refused with 503, so webhooks and probes keep the connections and
tasks streams would take.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

import structlog
from redis.exceptions import RedisError
from sse_starlette import ServerSentEvent

from worker.ledger.ledger import Ledger
from worker.ledger.log import LogEntry
from worker.runtime.cancelling import cancel_until_done

WAIT_MS = 5_000  # under the Redis client's 10 s socket timeout
QUEUE = 1_000  # entries a subscriber may fall behind before it is dropped
PAGE = 500  # entries read from Redis at once, following or catching up
GATHER = 0.1  # seconds the reader lets entries gather between two reads that found some
RETRY_AFTER = 1.0  # seconds the reader waits after Redis failed it
log = structlog.get_logger("receiver")

EntryId = tuple[int, int]  # a stream id as numbers, to compare


class Full(Exception):
    """As many streams as this process serves are open."""


def id_of(entry_id: str) -> EntryId:
    milliseconds, sequence = entry_id.split("-")
    return int(milliseconds), int(sequence)


@dataclass(frozen=True)
class Chunk:
    """Entries in order, each encoded once as a Server-Sent Event; one chunk is shared by
    every stream it is sent to."""

    ids: tuple[EntryId, ...]
    events: tuple[bytes, ...]
    body: bytes

    @classmethod
    def of(cls, entries: Sequence[LogEntry]) -> "Chunk":
        events = tuple(
            ServerSentEvent(id=entry.id, event="entry", data=json.dumps(entry.public())).encode()
            for entry in entries
        )
        return cls(tuple(id_of(entry.id) for entry in entries), events, b"".join(events))

    def after(self, sent: EntryId) -> bytes:
        """What of this chunk comes after the entry `sent`."""
        if self.ids[0] > sent:
            return self.body
        pairs = zip(self.ids, self.events, strict=True)
        return b"".join(event for id_, event in pairs if id_ > sent)


@dataclass(eq=False)
class Subscriber:
    # Unbounded as a queue, bounded by `pending`: a chunk is shared, so what a slow subscriber
    # holds is references, at most QUEUE entries' worth.
    queue: asyncio.Queue[Chunk] = field(default_factory=asyncio.Queue)
    pending: int = 0  # entries queued, not yet taken
    dropped: bool = False


class LogFanout:
    def __init__(self, ledger: Ledger, most: int) -> None:
        self.ledger = ledger
        self.most = most
        self._subscribers: set[Subscriber] = set()
        self._reader: asyncio.Task[None] | None = None

    @property
    def open(self) -> int:
        return len(self._subscribers)

    def stream(self, after: str | None) -> AsyncGenerator[bytes, None]:
        """Entries after the stream id `after` (from now on if None), each once, in order.
        Raises `Full` if no stream is free. A stream counts from its first step to its end: one
        never read (a HEAD, a client gone at once) holds nothing."""
        if len(self._subscribers) >= self.most:
            raise Full(f"{self.most} live streams are open (IMAGEDOCK_STREAMS_MAX)")
        return self._events(after)

    async def _events(self, after: str | None) -> AsyncGenerator[bytes, None]:
        if len(self._subscribers) >= self.most:  # taken since `stream` said there was room
            return
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        try:
            now = await self.ledger.history.last_id()
            if self._reader is None or self._reader.done():
                # From now: what came before is each subscriber's to catch up on.
                self._reader = asyncio.create_task(self._read(now))
            after = after or now
            sent = id_of(after)
            while page := await self.ledger.history.after(after, count=PAGE):  # catching up
                if subscriber.dropped:
                    return
                chunk = Chunk.of(page)
                sent = chunk.ids[-1]
                yield chunk.body
                after = page[-1].id
                if len(page) < PAGE:
                    break
            while not subscriber.dropped:
                chunk = await subscriber.queue.get()
                subscriber.pending -= len(chunk.ids)
                if chunk.ids[-1] > sent:  # the catch-up may have sent some of it already
                    body = chunk.after(sent)
                    sent = chunk.ids[-1]
                    yield body
        finally:
            self._subscribers.discard(subscriber)

    async def _read(self, after: str) -> None:
        while self._subscribers:
            try:
                entries = await self.ledger.history.follow(after, block_ms=WAIT_MS, count=PAGE)
            except RedisError as exc:  # the streams stay open and catch up once it is back
                log.warning("log.follow_failed", error=repr(exc))
                await asyncio.sleep(RETRY_AFTER)
                continue
            except Exception as exc:  # whatever else: logged, and the streams do not stall
                log.error("log.follow_failed", error=repr(exc), exc_info=exc)
                await asyncio.sleep(RETRY_AFTER)
                continue
            if entries:
                after = entries[-1].id
                self._offer(Chunk.of(entries))
                await asyncio.sleep(GATHER)

    def _offer(self, chunk: Chunk) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.pending + len(chunk.ids) > QUEUE:  # too slow: resumes with Last-Event-ID
                subscriber.dropped = True
                self._subscribers.discard(subscriber)
            else:
                subscriber.pending += len(chunk.ids)
                subscriber.queue.put_nowait(chunk)

    async def aclose(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await cancel_until_done([self._reader])
