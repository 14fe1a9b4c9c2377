"""One Lua script called by many requests at once, sent as one pipeline a turn of the event loop.

Each call through redis-py's pool costs far more CPU than the script itself: taking a connection,
probing it, retry bookkeeping, packing, parsing, each per call. Under load the receiver has dozens
of webhooks waiting on the same script; queued together they share one connection and one round
trip, and the per-call cost drops to packing and parsing. Alone, a call waits one turn of the loop.

The calls stay independent: each gets its own answer or its own error, a batch is never a
transaction, and a script Redis has forgotten (a restart, a failover) is loaded again and the
calls it refused are sent once more.
"""

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

Args = Sequence[str | bytes | int | float]
Waiting = list[tuple[Args, asyncio.Future[Any]]]
MOST = 256  # calls a batch: a flood is sent as several, so no caller waits on a huge one


class BatchedScript:
    def __init__(self, redis: Redis, script: str) -> None:
        self.redis = redis
        self.script = script
        self.sha = redis.register_script(script).sha
        self._waiting: Waiting = []
        self._sending: set[asyncio.Task[None]] = set()  # held so no batch is collected mid-send

    async def __call__(self, args: Args) -> Any:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((args, answer))
        if len(self._waiting) == 1:  # the first of this turn: send the batch on the next one
            loop.call_soon(self._send_waiting)
        return await answer

    def _send_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), MOST):
            task = asyncio.create_task(self._send(waiting[start : start + MOST]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: Waiting) -> None:
        try:
            answers = await self._answers([args for args, _ in batch])
            for (_, waiting), answer in zip(batch, answers, strict=True):
                if waiting.done():  # its caller was cancelled: the script ran all the same
                    continue
                if isinstance(answer, Exception):
                    waiting.set_exception(answer)
                else:
                    waiting.set_result(answer)
        except asyncio.CancelledError:
            for _, waiting in batch:
                waiting.cancel()
            raise
        except Exception as exc:  # the connection's error is every call's error
            for _, waiting in batch:
                if not waiting.done():
                    waiting.set_exception(exc)

    async def _answers(self, calls: list[Args]) -> list[Any]:
        """Each call's answer or error. Calls refused for a script Redis forgot are sent again
        once it is loaded; if that fails, only they get the error: the others ran."""
        answers = await self._run(calls)
        forgotten = [n for n, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if forgotten:
            try:
                await self.redis.script_load(self.script)
                again = await self._run([calls[n] for n in forgotten])
            except RedisError as exc:
                again = [exc] * len(forgotten)
            for n, answer in zip(forgotten, again, strict=True):
                answers[n] = answer
        return answers

    async def _run(self, calls: list[Args]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.execute_command("EVALSHA", self.sha, 0, *args)
            answers: list[Any] = await pipe.execute(raise_on_error=False)
        return answers
