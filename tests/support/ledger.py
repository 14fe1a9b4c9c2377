"""Reading the ledger the way tests do, and production never needs to."""

from redis.asyncio import Redis

from worker.ledger import keys
from worker.ledger.ledger import Ledger
from worker.ledger.paging import PageQuery
from worker.ledger.records import JobRecord, text


async def recent(ledger: Ledger, limit: int = 50) -> list[JobRecord]:
    """The newest records first."""
    return (await ledger.page(PageQuery(limit=limit))).records


async def counters(redis: Redis) -> dict[str, int]:
    """Every counter's field in Redis, with its count."""
    raw = await redis.hgetall(keys.STATS)  # type: ignore[misc]
    return {text(k) or "": int(v) for k, v in raw.items()}
