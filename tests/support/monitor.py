"""The commands imagedock sends Redis, seen through MONITOR: how tests count a request's round
trips."""

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.support.stack import Stack
from worker.ledger.scripts import source as script_source


@asynccontextmanager
async def monitoring(stack: Stack) -> AsyncIterator[list[list[str]]]:
    """The commands clients of the tests' database send Redis while the block runs (not those
    scripts run inside, which MONITOR shows as from `lua`, nor the stack's dispatcher looking
    for jobs to submit)."""
    url = stack.settings.redis_url
    database = url.rsplit("/", 1)[1]
    taking = hashlib.sha1(script_source("take").encode()).hexdigest()  # noqa: S324 - Redis's name
    monitor = await asyncio.create_subprocess_exec(
        "redis-cli", "-u", url, "monitor", stdout=asyncio.subprocess.PIPE
    )
    assert monitor.stdout is not None
    assert (await monitor.stdout.readline()).strip() == b"OK"
    seen: list[list[str]] = []
    try:
        yield seen
        marker = f"end-{time.time()}"
        await stack.redis.echo(marker)
        while True:
            line = (await asyncio.wait_for(monitor.stdout.readline(), 10)).decode()
            if marker in line:
                break
            source, _, command = line.partition("] ")
            words = [word.strip('"') for word in command.split()]
            # Other databases are other tests' clients; a PING is redis-py's health check of a
            # connection idle for 30 s, not part of the request.
            ours = f"[{database} " in source and " lua" not in source
            looking = len(words) > 1 and words[1] == taking
            if ours and words and words[0].lower() != "ping" and not looking:
                seen.append(words)
    finally:
        monitor.terminate()
        await monitor.wait()
