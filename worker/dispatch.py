"""Sending queued jobs to Apiframe at its pace: the loop each worker process runs beside its
arq workers.

It takes the next job from the submit queue (`worker.ledger.waiting`), which answers only when
Apiframe's limits allow one now, and sends it; up to `SENDERS` sends run at once per process.
A taken job is leased for `IMAGEDOCK_CLAIM` (30 s), renewed every third of it while it is sent:
a process that dies mid-send leaves its jobs to another within 30 s, which sends each again with its
Idempotency-Key, so Apiframe bills it once.
What Apiframe answers sets the pace for every process: a 429 pauses submitting for its
`Retry-After` and halves the rate, which then climbs back; a 503 or no answer backs off, 1 s
doubling to a minute; a 402 pauses until Apiframe's balance, read every
`IMAGEDOCK_CREDITS_RECHECK` seconds, holds what it asked for (no job is sent to learn it), and
a refused API key pauses for a minute. A job never fails for any of
these: it waits, given back first in its caller's queue, until the submit deadline
(`IMAGEDOCK_SUBMIT_DEADLINE`, the poller's) ends it with the reason. Only Apiframe's refusal of
the request itself fails it.
"""

import asyncio
import contextlib
import signal
import time
from typing import NamedTuple

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.apiframe import (
    ApiframeError,
    AuthenticationError,
    Forbidden,
    InsufficientCredits,
    RateLimited,
)
from worker.ledger.waiting import Taken, Wait
from worker.runtime.cancelling import cancel_until_done
from worker.submission import SubmitDeps, refuses_the_request, submit_waiting

SENDERS = 48  # sends at once per process: 40/s at 1 s an answer, within httpx's 100 connections
IDLE = 0.05  # seconds between looks at an empty queue, or one at its limit of jobs in flight
LONGEST_NAP = 1.0  # the longest a taker sleeps before it looks again: a stop is never waited on
KEY_REFUSED_PAUSE = 60.0
BALANCE_EVERY = 300.0  # seconds between reads of Apiframe's balance
BACKOFF_MOST = 60.0
log = structlog.get_logger("dispatch")


class Slowdown(NamedTuple):
    """What an answer does to submitting: a pause of every process's sends, and why; `slow`
    also halves the rate in force."""

    pause: float = 0.0
    why: str = ""
    slow: bool = False


class Dispatcher:
    """Takes and sends jobs until stopped. Run by `imagedock worker` under the same supervision
    as its arq workers (`worker.runtime.runner`): `async_run`, `stop`, `release`, `pool`."""

    def __init__(self, deps: SubmitDeps, *, credits_recheck: float) -> None:
        self.deps = deps
        self.pool: Redis = deps.redis
        self.credits_recheck = credits_recheck
        self._stopping = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._held: set[str] = set()  # the jobs this process is sending: their leases renewed
        self._renewing: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._short_of_credits = asyncio.Event()  # a 402: the balance is read more often

    def stop(self, signum: signal.Signals = signal.SIGTERM, *, wait: float | None = None) -> None:
        """Take no new job; sends under way end in their answers (`release` waits for them)."""
        self._stopping.set()

    async def release(self) -> None:
        """Wait for the sends under way (each ends in Apiframe's answer or its timeout), then
        stop renewing their leases."""
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        await cancel_until_done([task for task in (self._renewing, self._watching) if task])
        self._renewing = self._watching = None

    async def async_run(self) -> None:
        # Renewing goes on until `release`: sends outlive the loop when it dies (a lost Redis).
        if self._renewing is None:
            self._renewing = asyncio.create_task(self._renew())
        if self._watching is None:
            self._watching = asyncio.create_task(self._watch_balance())
        senders = asyncio.Semaphore(SENDERS)
        while not self._stopping.is_set():
            await senders.acquire()
            try:
                got = await self.deps.queue.take()
            except BaseException:
                senders.release()
                raise
            if isinstance(got, Wait):
                senders.release()
                await self._nap(IDLE if got.seconds is None else min(got.seconds, LONGEST_NAP))
                continue
            task = asyncio.create_task(self._send(got, senders))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _nap(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(seconds, 0.001))

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.deps.queue.limits.renew_every)
            if not self._held:
                continue
            try:
                await self.deps.queue.renew(list(self._held))
            except RedisError as exc:  # the leases may lapse: another taker then sends again
                log.warning("submit.renew_failed", error=repr(exc), held=len(self._held))

    async def _watch_balance(self) -> None:
        """Apiframe's balance, read at start and every `BALANCE_EVERY` seconds, for
        `imagedock_credits_available` and its alert; after a 402, every `credits_recheck`
        seconds, keeping submitting paused until the balance holds what Apiframe asked for."""
        queue, recheck = self.deps.queue, self.credits_recheck
        while True:
            every = BALANCE_EVERY
            try:
                credits = await self._read_balance()
                needed = await queue.credits_needed()
                if needed is not None:
                    every = recheck
                    if credits is not None and credits >= needed:
                        log.info("credits.recovered", credits=credits, needed=needed)
                        await queue.resume()
                    elif credits is not None:  # read again before the pause could lapse
                        await queue.extend_credits_wait(time.time() + 2 * recheck)
                    # Unread, the pause lapses, and the next submit asks Apiframe itself.
            except (ApiframeError, RedisError) as exc:
                log.warning("credits.unread", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._short_of_credits.wait(), every)
            if self._short_of_credits.is_set():  # a 402 just now: the balance in a while
                self._short_of_credits.clear()
                await asyncio.sleep(recheck)

    async def _read_balance(self) -> float | None:
        account = await self.deps.apiframe.me()
        team = (account.get("team") if isinstance(account, dict) else None) or {}
        credits = team.get("credits") if isinstance(team, dict) else None
        if not isinstance(credits, int | float):
            return None
        await self.deps.queue.record_balance(float(credits))
        return float(credits)

    async def _send(self, taken: Taken, senders: asyncio.Semaphore) -> None:
        queue = self.deps.queue
        self._held.add(taken.ref)
        try:
            with structlog.contextvars.bound_contextvars(ref=taken.ref, caller=taken.caller):
                record = await submit_waiting(self.deps, taken.ref)
                if record is not None and record.job_id:
                    await queue.sent(taken.ref)
                else:  # gone, or ended while it waited: nothing to send
                    await queue.give_back(taken.ref)
        except ApiframeError as exc:
            slowdown = await self._answer_to(exc)
            await queue.give_back(
                taken.ref, pause=slowdown.pause, why=slowdown.why, slow=slowdown.slow
            )
        except Exception as exc:  # its lease lapses and another taker sends it
            log.exception("submit.crashed", ref=taken.ref, error=repr(exc))
        finally:
            self._held.discard(taken.ref)
            senders.release()

    async def _answer_to(self, exc: ApiframeError) -> Slowdown:
        """How Apiframe's answer sets the pace for every job."""
        if refuses_the_request(exc):  # the job has failed; the pace is not at fault
            return Slowdown()
        if isinstance(exc, RateLimited):
            why = "Apiframe answered 429: slowed, and paused for its Retry-After"
            return Slowdown(exc.retry_after or 1.0, why, slow=True)
        if isinstance(exc, InsufficientCredits):
            why = (
                f"Apiframe answered 402: {exc.credits_available} credits left, "
                f"{exc.credits_required} needed; waiting for the balance"
            )
            log.warning("submit.no_credits", recheck_in=self.credits_recheck)
            needed, until = float(exc.credits_required or 1), time.time() + 2 * self.credits_recheck
            await self.deps.queue.short_of_credits(needed, until, why)
            self._short_of_credits.set()
            return Slowdown()  # the pause is set: the job waits again, first
        if isinstance(exc, AuthenticationError | Forbidden):
            log.error("submit.key_refused", error=str(exc))
            why = f"Apiframe refused imagedock's API key: {exc.message}"
            return Slowdown(KEY_REFUSED_PAUSE, why)
        if exc.transient:
            streak = await self.deps.queue.failures()
            why = f"Apiframe unavailable ({streak} in a row): {exc}"
            return Slowdown(min(2.0 ** (streak - 1), BACKOFF_MOST), why)
        return Slowdown(1.0, str(exc))
