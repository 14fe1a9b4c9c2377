"""The submit queue in Redis: jobs accepted but not yet at Apiframe, and the pace they go at.

Every worker process takes from it through one script (`lua/take.lua`), so the limits hold
across all of them: at most the configured submits a second, evenly spaced, and at most the
configured jobs in flight at Apiframe (sent, not yet finished: `lua/move.lua` frees a place when
a job reaches COMPLETED or ends). Callers are served in turn, each from its own queue ordered
by priority, then arrival. A taken job is leased: should its taker die, it waits again.
"""

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property

from redis.asyncio import Redis

from worker.ledger import keys
from worker.ledger.admission import Admission, utc_day
from worker.ledger.log import echo
from worker.ledger.records import JobRecord, text
from worker.ledger.scripts import source

OPERATOR = "operator"  # the caller name of jobs submitted with imagedock's own API token
LEAST_RATE = 0.1  # submits a second a run of 429s slows the pace to, at the lowest


class Priority(IntEnum):
    """Inside one caller's share, what goes first; the value is the band's rank."""

    high = 0
    normal = 1
    low = 2


@dataclass(frozen=True)
class Limits:
    rate: float  # submits a second, across every worker
    in_flight: int  # jobs at Apiframe not yet finished
    stale: float  # seconds after which a job counted in flight is no longer counted
    caller_rate: Mapping[str, float] = field(default_factory=dict)  # one caller's own caps
    caller_in_flight: Mapping[str, int] = field(default_factory=dict)
    caller_credits: Mapping[str, float] = field(default_factory=dict)  # a UTC day's
    waiting_most: int = 20_000  # jobs one caller may have waiting
    credits_per_job: float = 10.0  # what a job of a model not yet seen to cost holds
    # Seconds a taken job stays taken unrenewed: a dead taker's job waits again after it. A
    # live taker renews its leases every third of it.
    lease: float = 30.0

    @property
    def renew_every(self) -> float:
        return self.lease / 3

    @cached_property
    def caps(self) -> str:
        """The callers' caps, as `take.lua` reads them."""
        return json.dumps(
            {"rate": dict(self.caller_rate), "in_flight": dict(self.caller_in_flight)},
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Taken:
    ref: str
    caller: str


@dataclass(frozen=True)
class Wait:
    seconds: float | None  # None: until a job finishes or arrives
    why: str


@dataclass(frozen=True)
class Pace:
    """What `imagedock status` and the dashboard show of the queue."""

    waiting: dict[str, int]  # per caller
    sending: int
    in_flight: int
    rate: float  # the rate in force
    paused_for: float  # seconds left of a pause, 0 if none
    why: str
    credits: float | None  # Apiframe's balance as last read (`record_balance`)
    credits_today: dict[str, float]  # per capped caller: credits its jobs hold or spent

    def summary(self) -> str:
        """The pace in a line: why submitting is slower than its limit, or empty."""
        if self.paused_for:
            return f"paused {self.paused_for:.0f} s more: {self.why}"
        return self.why


class SubmitQueue:
    def __init__(self, redis: Redis, config: str, limits: Limits) -> None:
        self.redis = redis
        self.config = config  # the ledger's script config
        self.limits = limits
        self._wait = redis.register_script(source("wait"))
        self._take = redis.register_script(source("take"))
        self._sent = redis.register_script(source("sent"))
        self._give_back = redis.register_script(source("give_back"))
        self._withdraw = redis.register_script(source("withdraw"))
        self._credits_wait = redis.register_script(source("credits_wait"))

    def admission(self, caller: str, model: str) -> Admission:
        """What `caller`'s next job of `model` is held to as it is recorded."""
        limits = self.limits
        cap = limits.caller_credits.get(caller)
        return Admission(caller, model, limits.waiting_most, cap, limits.credits_per_job)

    async def add(
        self,
        record: JobRecord,
        priority: Priority = Priority.normal,
        *,
        poll_at: float,
        actor: str,
    ) -> bool:
        """Queue the record for submission, have the poller first look at `poll_at`, and log
        it; False if it is queued already, sent or ended."""
        caller = record.caller or OPERATOR
        args: list[str | float] = [
            self.config,
            record.ref,
            caller,
            int(priority),
            time.time(),
            poll_at,
            actor,
            priority.name,
        ]
        queued = bool(await self._wait(args=args))
        if queued:
            echo("job.queued", record.ref, None, actor, {"priority": priority.name})
        return queued

    async def take(self) -> Taken | Wait:
        """The next job to submit, leased to this taker, or how long to wait and why."""
        limits = self.limits
        args: list[str | float] = [
            self.config,
            time.time(),
            limits.rate,
            limits.in_flight,
            limits.lease,
            limits.stale,
            limits.caps,
        ]
        answer = await self._take(args=args)
        if int(answer[0]) == 1:
            return Taken(text(answer[1]) or "", text(answer[2]) or "")
        seconds = float(answer[1])
        return Wait(None if seconds < 0 else seconds, text(answer[2]) or "")

    async def renew(self, refs: Iterable[str]) -> None:
        """Extend the leases of jobs this taker is still sending."""
        until = time.time() + self.limits.lease
        await self.redis.zadd(keys.SENDING, dict.fromkeys(refs, until), xx=True)

    async def sent(self, ref: str) -> None:
        """Apiframe took the job: it counts in flight until it finishes."""
        await self._sent(args=[self.config, ref, time.time(), self.limits.rate])

    async def give_back(
        self, ref: str, *, pause: float = 0.0, why: str = "", slow: bool = False
    ) -> bool:
        """Apiframe did not take the job now: it waits again, first in its caller's queue,
        and submitting pauses for `pause` seconds (`slow`: at half the rate from then on)."""
        args: list[str | float] = [
            self.config,
            ref,
            time.time(),
            pause,
            why[:300],
            int(slow),
            self.limits.rate,
            LEAST_RATE,
        ]
        return bool(await self._give_back(args=args))

    async def failures(self) -> int:
        """One more answer in a row that said Apiframe is unavailable; returns the count."""
        return int(await self.redis.hincrby(keys.PACE, "failures", 1))  # type: ignore[misc]

    async def withdraw(self, ref: str) -> bool | None:
        """Take a job out before it is submitted: True if it was waiting, None if it is being
        sent right now, False if it is not waiting (sent already, or never queued)."""
        found = int(await self._withdraw(args=[self.config, ref]))
        return None if found == 2 else found == 1

    async def pace(self) -> Pace:
        listed = await self.redis.lrange(keys.WAITING_CALLERS, 0, 99)  # type: ignore[misc]
        callers = [text(name) or "" for name in listed]
        async with self.redis.pipeline(transaction=False) as pipe:
            for caller in callers:
                pipe.zcard(keys.waiting(caller))
            pipe.zcard(keys.SENDING)
            pipe.zcard(keys.IN_FLIGHT)
            pipe.hgetall(keys.PACE)
            pipe.hgetall(keys.credits_day(utc_day()))
            *depths, sending, in_flight, raw, today = await pipe.execute()
        state = {text(k): text(v) for k, v in raw.items()}
        paused_for = max(0.0, float(state.get("paused_until") or 0) - time.time())
        rate = min(float(state.get("rate") or self.limits.rate), self.limits.rate)
        why = (state.get("why") or "paused") if paused_for else ""
        if not why and rate < self.limits.rate:
            why = f"slowed by Apiframe's 429: {rate:.2f} of {self.limits.rate:g} submits a second"
        read = state.get("credits")
        credits = float(read) if read else None
        spent = {text(name) or "": round(float(value), 2) for name, value in today.items()}
        return Pace(dict(zip(callers, map(int, depths), strict=True)), int(sending),
                    int(in_flight), rate, paused_for, why, credits, spent)  # fmt: skip

    async def short_of_credits(self, needed: float, until: float, why: str) -> None:
        """Apiframe answered 402, asking for `needed` credits: submitting is paused until
        `until`, and then for as long as the balance read is short (`extend_credits_wait`)."""
        await self._credits_wait(args=[self.config, "short", until, needed, why[:300]])

    async def credits_needed(self) -> float | None:
        """What the last 402 asked for, while submitting waits for the balance; else None."""
        needed = await self.redis.hget(keys.PACE, "credits_needed")  # type: ignore[misc]
        return float(needed) if needed is not None else None

    async def extend_credits_wait(self, until: float) -> None:
        """The balance is still short of what the 402 asked for: its pause goes on."""
        await self._credits_wait(args=[self.config, "extend", until, "", ""])

    async def resume(self) -> None:
        """The balance holds what the 402 asked for: submitting goes on at once."""
        await self._credits_wait(args=[self.config, "resume", 0, "", ""])

    async def record_balance(self, credits: float) -> None:
        """Apiframe's balance for imagedock's key, as just read."""
        await self.redis.hset(keys.PACE, mapping={"credits": credits, "credits_at": time.time()})  # type: ignore[misc]
