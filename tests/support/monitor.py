"""The commands imagedock sends Redis, seen through MONITOR: how tests count a request's round
trips."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.support.stack import Stack


@asynccontextmanager
async def monitoring(stack: Stack) -> AsyncIterator[list[list[str]]]:
    """The commands clients of the tests' database send Redis while the block runs (not those
    scripts run inside, which MONITOR shows as from `lua`)."""
    url = stack.settings.redis_url
    database = url.rsplit("/", 1)[1]
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
            if ours and words and words[0].lower() != "ping":
                seen.append(words)
    finally:
        monitor.terminate()
        await monitor.wait()
