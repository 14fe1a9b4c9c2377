"""arq's Worker, safe to stop at any instant.

arq claims a job (its in-progress key) before the job's task starts, and gives the claim up in
the task's own cleanup; a stop lets running jobs finish within `job_completion_wait`, then
cancels them, leaving them queued for the next worker at once. Its stop had gaps, each seen as a
job held until its claim expired (its timeout plus ten seconds), or run on past the stop:
- a task cancelled before its first step runs none of its code, cleanup included;
- a stop arriving while the worker claimed jobs cut claims off from their tasks, and a task
  created just after the stop had cancelled the others ran on;
- a cancellation can be lost (`worker.runtime.connections`, `worker.runtime.cancelling`): a
  job, or the worker's loop, ran on;
- a job's task cancelled twice leaves arq's shielded write of its end to nobody.
Here claiming is never cut short, a job started after the cut is cancelled at once, what goes on
running is cancelled again, any job's task that ends cancelled gives its claim up, and
`release` waits for every write.
"""

import asyncio
import contextlib
import signal
import time
from collections.abc import Coroutine
from functools import partial
from typing import Any

import structlog
from arq import Worker
from arq.constants import in_progress_key_prefix
from redis.exceptions import RedisError

from worker.runtime.cancelling import cancel_until_done

log = structlog.get_logger("worker")
# Seconds before a job claimed by another worker is asked about again: a claim that lapses (its
# worker died) is taken up this much later, within the claim itself (`IMAGEDOCK_CLAIM`).
ELSEWHERE = 1.0
ELSEWHERE_MOST = 10_000  # jobs remembered so, before the expired ones are forgotten


class StoppableWorker(Worker):
    def __init__(self, *, claim: float | None = None, **options: Any) -> None:
        super().__init__(**options)
        if claim is not None:
            # arq's claim lasts the longest timeout on the worker, so a job of a worker that
            # died waits that long; here it lasts `claim` and is renewed while the job runs.
            self.in_progress_timeout_s = claim
        self.claim = claim
        self._renewing: asyncio.Task[None] | None = None
        self.stop_wait: float = options.get("job_completion_wait", 0)
        self._cut = False  # running jobs have been cancelled: any job started now is too
        self._finishing: set[str] = set()  # jobs whose end arq is writing: never cut, nor unclaimed
        self._background: set[asyncio.Task[Any]] = set()
        self._elsewhere: dict[str, float] = {}  # job -> when to look again: claimed by another

    def stop(
        self, signum: signal.Signals = signal.SIGTERM, *, wait: float | None = None
    ) -> asyncio.Task[None]:
        """Take no new job, give running ones `wait` seconds (`stop_wait` unless said), then
        cancel what is left and the worker's loop. The returned task ends once that is done."""
        self.allow_pick_jobs = False
        wait = self.stop_wait if wait is None else wait
        running = sum(not task.done() for task in self.tasks.values())
        log.info("worker.stopping", queue=self.queue_name, signal=signum.name, running=running)
        return self._hold(self._cut_after(wait))

    async def main(self) -> None:
        # Renewing goes on until `release`: jobs outlive the loop when it dies (a lost Redis).
        if self.claim is not None and self._renewing is None:
            self._renewing = asyncio.create_task(self._renew_claims(self.claim))
        await super().main()

    async def _renew_claims(self, claim: float) -> None:
        """Every third of `claim`, extend the claim of each job still running: only a worker
        that stopped renewing (killed, cut off) loses its jobs, and within `claim` seconds. A
        turn that failed is tried again a second later."""
        while True:
            running = [job_id for job_id, task in self.tasks.items() if not task.done()]
            try:
                if running:
                    async with self.pool.pipeline(transaction=False) as pipe:
                        for job_id in running:  # a claim already given up is not made again
                            pipe.pexpire(in_progress_key_prefix + job_id, round(claim * 1000))
                        await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("worker.claims_not_renewed", jobs=len(running), error=repr(exc))
                await asyncio.sleep(min(1.0, claim / 3))
                continue
            await asyncio.sleep(claim / 3)

    def handle_sig(self, signum: int) -> None:  # arq's own signal handling, made this stop
        self.stop(signal.Signals(signum), wait=0)

    def handle_sig_wait_for_completion(self, signum: int) -> None:
        self.stop(signal.Signals(signum))

    async def _cut_after(self, wait: float) -> None:
        running = [task for task in self.tasks.values() if not task.done()]
        if running:
            await asyncio.wait(running, timeout=wait)
        self._cut = True
        while targets := self._to_cut():  # a job that lost its cancellation may start its function
            await cancel_until_done(targets)

    def _to_cut(self) -> list[asyncio.Task[Any]]:
        """The worker's loop, and each job's function if it runs one, else the job's task. arq
        leaves a job whose function was cancelled queued, not counted as a try; a job whose end
        arq is writing is left to write it."""
        jobs = [
            self.job_tasks.get(job_id) or task
            for job_id, task in self.tasks.items()
            if job_id not in self._finishing
        ]
        return [task for task in (*jobs, self.main_task) if task is not None and not task.done()]

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # A stop cancelling the loop must not come between a claim and its task.
        await asyncio.shield(self._hold(self._claim_each(job_ids)))

    async def _claim_each(self, job_ids: list[bytes]) -> None:
        """arq's claiming, one job at a time, so that a stop claims no more. A job stays in the
        queue while it runs, so every poll finds it again: one this worker runs is passed over,
        and one another worker holds is looked at again only after `ELSEWHERE`, where arq
        would ask Redis about each of them three times every poll."""
        now = time.monotonic()
        if len(self._elsewhere) > ELSEWHERE_MOST:
            self._elsewhere = {job: at for job, at in self._elsewhere.items() if at > now}
        for raw in job_ids:
            if not self.allow_pick_jobs:
                return
            job_id = raw.decode()
            running = self.tasks.get(job_id)
            if (running is not None and not running.done()) or self._elsewhere.get(job_id, 0) > now:
                continue
            await super().start_jobs([raw])
            task = self.tasks.get(job_id)
            if task is None or task is running:
                self._elsewhere[job_id] = now + ELSEWHERE
            else:
                task.add_done_callback(partial(self._ended, job_id))
                if self._cut:  # claimed as the cut came: cancelled before it starts
                    task.cancel()

    async def finish_job(self, job_id: str, *args: Any) -> None:
        self._finishing.add(job_id)
        await asyncio.shield(self._hold(super().finish_job(job_id, *args)))

    async def finish_failed_job(self, job_id: str, *args: Any) -> None:
        self._finishing.add(job_id)
        await asyncio.shield(self._hold(super().finish_failed_job(job_id, *args)))

    def _ended(self, job_id: str, task: asyncio.Task[Any]) -> None:
        if job_id in self._finishing:
            self._finishing.discard(job_id)  # arq's write of the job's end gives the claim up
        elif task.cancelled():  # cut before arq's handling of the job, or before its first step
            self._hold(self._unclaim(job_id))

    async def _unclaim(self, job_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):  # then the claim expires, as in arq
            await self.pool.delete(in_progress_key_prefix + job_id)

    def _hold(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """`work` as a task held until it ends, which `release` waits for."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _lingering(self) -> list[asyncio.Task[Any]]:
        tasks = (*self.tasks.values(), *self.job_tasks.values(), *self._background)
        return [task for task in tasks if not task.done()]

    async def release(self) -> None:
        """arq's `close`, less closing the Redis pool: that belongs to the process, and another
        worker may still be using it."""
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        # What can outlive a job's task: claiming, a job's function still ending, arq's write of
        # a job's end. Never cancelled here: they are how a stop ends cleanly.
        while lingering := self._lingering():  # each may leave another: a claim, its unclaim
            await asyncio.wait(lingering)
        if self._renewing is not None:  # no job of this worker's runs any more
            await cancel_until_done([self._renewing])
            self._renewing = None
        with contextlib.suppress(RedisError, OSError):  # a Redis outage may be why it stops
            await self.pool.delete(self.health_check_key)
