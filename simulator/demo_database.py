"""The demo's Redis database: its own number on the configured Redis, emptied at every start, and
held by one demo at a time, so it never empties what another program or another demo is using."""

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from simulator.demo_jobs import DemoError
from worker.ledger.keys import DEMO as MARKER
from worker.ledger.keys import DEMO_RUNNING as LEASE
from worker.ledger.records import text

DEMO_DB = 12
LEASE_SECONDS = 15


def demo_database(url: str) -> tuple[str, str]:
    """The same Redis at the demo's database, and where that is, with no password in it."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(name, value) for name, value in parse_qsl(parts.query) if name != "db"]
        query.append(("db", str(DEMO_DB)))
        return urlunsplit(parts._replace(query=urlencode(query))), f"{parts.path} db {DEMO_DB}"
    where = f"{parts.hostname}:{parts.port or 6379}/{DEMO_DB}"
    return urlunsplit(parts._replace(path=f"/{DEMO_DB}")), where


@contextlib.asynccontextmanager
async def claimed(redis: Redis, where: str) -> AsyncIterator[None]:
    """Empty the database and hold it for the block, unless another demo holds it or it holds
    keys no demo wrote."""
    holder = await redis.get(LEASE)
    if holder is not None:
        raise DemoError(
            f"another imagedock demo ({text(holder)}) is using Redis database {where}: "
            "stop it first, or point IMAGEDOCK_REDIS_URL at another Redis"
        )
    if await redis.dbsize() and not await redis.exists(MARKER):
        raise DemoError(
            f"Redis database {where} holds keys the demo did not write, and the demo empties "
            "its database at start: point IMAGEDOCK_REDIS_URL at another Redis"
        )
    await redis.flushdb()
    await redis.set(MARKER, "imagedock demo: emptied at the start of every run")
    me = f"{socket.gethostname()}:{os.getpid()}"
    if not await redis.set(LEASE, me, nx=True, ex=LEASE_SECONDS):
        raise DemoError(f"another imagedock demo took Redis database {where} at the same time")
    renewing = asyncio.create_task(renew(redis, me))
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        with contextlib.suppress(RedisError, OSError):
            await redis.delete(LEASE)


async def renew(redis: Redis, me: str) -> None:
    while True:
        await asyncio.sleep(LEASE_SECONDS / 3)
        with contextlib.suppress(RedisError, OSError):  # the workers meet the outage and say so
            await redis.set(LEASE, me, ex=LEASE_SECONDS)
