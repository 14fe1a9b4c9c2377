"""The live job log, read once per process and fanned out to every stream.

One task follows the global log with a blocking XREAD (one Redis connection, however many
streams are open), encodes each entry once, and offers it to each subscriber's bounded queue. A
subscriber that falls `QUEUE` entries behind is dropped: its stream ends at once, and the client
resumes with `Last-Event-ID` from where it was. A subscriber that starts in the past catches up from
Redis a page at a time, then takes the queue, skipping what it has already sent. At most
`IMAGEDOCK_STREAMS_MAX` streams are served at once; past that a stream is refused with 503, so
webhooks and probes keep the connections and tasks streams would take.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import structlog
from redis.exceptions import RedisError

from worker.ledger.ledger import Ledger
from worker.ledger.log import LogEntry
from worker.runtime.cancelling import cancel_until_done

WAIT_MS = 5_000  # under the Redis client's 10 s socket timeout
QUEUE = 1_000  # entries a subscriber may fall behind before it is dropped
PAGE = 500  # entries read from Redis at once, following or catching up
RETRY_AFTER = 1.0  # seconds the reader waits after Redis failed it
log = structlog.get_logger("receiver")

Event = tuple[tuple[int, int], dict[str, str]]  # the entry's id as numbers, and its SSE event


class Full(Exception):
    """As many streams as this process serves are open."""


def id_of(entry_id: str) -> tuple[int, int]:
    milliseconds, sequence = entry_id.split("-")
    return int(milliseconds), int(sequence)


def event_of(entry: LogEntry) -> Event:
    return id_of(entry.id), {"id": entry.id, "event": "entry", "data": json.dumps(entry.public())}


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE))
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

    def stream(self, after: str | None) -> AsyncGenerator[dict[str, str], None]:
        """Entries after the stream id `after` (from now on if None), each once, in order.
        Raises `Full` if no stream is free. A stream counts from its first step to its end: one
        never read (a HEAD, a client gone at once) holds nothing."""
        if len(self._subscribers) >= self.most:
            raise Full(f"{self.most} live streams are open (IMAGEDOCK_STREAMS_MAX)")
        return self._events(after)

    async def _events(self, after: str | None) -> AsyncGenerator[dict[str, str], None]:
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
                for entry in page:
                    sent, event = event_of(entry)
                    yield event
                after = page[-1].id
                if len(page) < PAGE:
                    break
            while not subscriber.dropped:
                entry_id, event = await subscriber.queue.get()
                if entry_id > sent:  # the catch-up may have sent it already
                    sent = entry_id
                    yield event
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
            for entry in entries:
                after = entry.id
                self._offer(event_of(entry))

    def _offer(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:  # too slow: it resumes with Last-Event-ID
                subscriber.dropped = True
                self._subscribers.discard(subscriber)

    async def aclose(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await cancel_until_done([self._reader])
