"""Every figure the operator's view shows, read from Redis in one pipelined round trip: the
ledger's counters and histograms, records per status, the oldest unfinished job, the poller's
watch list, the dead letters, arq's queues and the workers' heartbeats. `/metrics` and `/stats`
both read this, so whichever receiver answers, they agree."""

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from worker.events import DEAD_LETTERS
from worker.heartbeat import HEARTBEATS
from worker.ledger import BY_STATUS, POLL_SET, STATS, text
from worker.measures import HISTOGRAMS, Histogram
from worker.queue import LANDING_QUEUE, POLLING_QUEUE
from worker.status import UNFINISHED, Status

QUEUES = {"landing": LANDING_QUEUE, "polling": POLLING_QUEUE}


@dataclass(frozen=True)
class Figures:
    counters: dict[str, int]
    by_status: dict[Status, int]
    oldest_unfinished: float | None  # when the oldest unfinished record was made
    polled: int
    dead_letters: int
    queues: dict[str, int]  # arq jobs waiting, by queue
    heartbeats: dict[str, float]  # each worker's last beat
    histograms: dict[Histogram, dict[str, str]]
    read_at: float

    def counter(self, name: str) -> int:
        return self.counters.get(name, 0)

    def labelled(self, prefix: str) -> dict[str, int]:
        """Counters named `prefix` + label, by label."""
        return {
            name.removeprefix(prefix): count
            for name, count in sorted(self.counters.items())
            if name.startswith(prefix)
        }

    def total(self, prefix: str) -> int:
        return sum(self.labelled(prefix).values())


async def read_figures(redis: Redis) -> Figures:
    unfinished = sorted(UNFINISHED)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(STATS)
        for status in Status:
            pipe.zcard(BY_STATUS + status.value)
        for status in unfinished:
            pipe.zrange(BY_STATUS + status.value, 0, 0, withscores=True)
        pipe.zcard(POLL_SET)
        pipe.llen(DEAD_LETTERS)
        for queue in QUEUES.values():
            pipe.zcard(queue)
        pipe.zrange(HEARTBEATS, 0, -1, withscores=True)
        for histogram in HISTOGRAMS:
            pipe.hgetall(histogram.key)
        answers = iter(await pipe.execute())
    counters = {text(k) or "": int(v) for k, v in next(answers).items()}
    by_status = {status: int(next(answers)) for status in Status}
    firsts = [score for _ in unfinished for _, score in next(answers)]
    polled, dead = int(next(answers)), int(next(answers))
    queues = {name: int(next(answers)) for name in QUEUES}
    beats = {text(member) or "": score for member, score in next(answers)}
    histograms = {
        histogram: {text(k) or "": text(v) or "0" for k, v in next(answers).items()}
        for histogram in HISTOGRAMS
    }
    return Figures(
        counters,
        by_status,
        min(firsts) if firsts else None,
        polled,
        dead,
        queues,
        beats,
        histograms,
        time.time(),
    )
