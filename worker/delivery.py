"""Delivering one event to one endpoint, signed per the Standard Webhooks specification.

Any 2xx is success. 429 and 503 honour `Retry-After`; other failures wait out the configured
schedule (Svix's by default). A delivery that exhausts the schedule becomes a dead letter, with its
last status and the start of the last body, until it is redriven.
"""

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import structlog
from arq.connections import ArqRedis
from standardwebhooks import Webhook

from worker.apiframe.client import parse_retry_after
from worker.events import DEAD_LETTERS, EVENT_TTL, attempts_key, delivered_key, event_key
from worker.ledger import Ledger, text
from worker.queue import endpoint_name

log = structlog.get_logger("delivery")
EXCERPT = 500


class DeliveryRetry(Exception):
    def __init__(self, defer: float) -> None:
        super().__init__(f"retry in {defer} s")
        self.defer = defer


@dataclass(frozen=True)
class Deliverer:
    redis: ArqRedis
    ledger: Ledger
    http: httpx.AsyncClient
    signer: Webhook
    schedule: tuple[float, ...]
    dead_letters_max: int


async def deliver_event(deps: Deliverer, event_id: str, url: str) -> str:
    """Send the event once; returns `delivered`, `dead`, or raises DeliveryRetry."""
    raw = text(await deps.redis.get(event_key(event_id)))
    if raw is None:
        log.warning("event.missing", event_id=event_id)
        return "missing"
    if await deps.redis.exists(delivered_key(event_id, url)):
        return "delivered"
    event = json.loads(raw)
    ref, job_id = event["data"].get("ref"), event["data"].get("jobId")
    attempt = int(await deps.redis.incr(attempts_key(event_id, url)))
    await deps.redis.expire(attempts_key(event_id, url), EVENT_TTL)
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": "imagedock-events",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": deps.signer.sign(event_id, now, raw),
    }
    status: int | None = None
    try:
        response = await deps.http.post(url, content=raw, headers=headers)
        status, body = response.status_code, response.text[:EXCERPT]
    except httpx.HTTPError as exc:
        body = f"{exc.__class__.__name__}: {exc}"[:EXCERPT]
        response = None
    if status is not None and 200 <= status < 300:
        await deps.redis.set(delivered_key(event_id, url), attempt, ex=EVENT_TTL)
        await deps.ledger.count("delivery:delivered")
        await deps.ledger.log(
            ref,
            job_id,
            "worker",
            "event.delivered",
            id=event_id,
            endpoint=endpoint_name(url),
            attempt=attempt,
            status=status,
        )
        return "delivered"
    if attempt >= len(deps.schedule):
        letter = {
            "eventId": event_id,
            "type": event["type"],
            "jobId": job_id,
            "ref": ref,
            "url": url,
            "attempts": attempt,
            "lastStatus": status,
            "lastBody": body,
            "failedAt": time.time(),
        }
        async with deps.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(DEAD_LETTERS, json.dumps(letter))
            pipe.ltrim(DEAD_LETTERS, 0, deps.dead_letters_max - 1)  # the oldest go first
            await pipe.execute()
        await deps.ledger.count("delivery:dead")
        await deps.ledger.log(
            ref,
            job_id,
            "worker",
            "event.dead",
            id=event_id,
            endpoint=endpoint_name(url),
            status=status,
        )
        return "dead"
    wait = deps.schedule[attempt]
    if response is not None and status in (429, 503):
        wait = parse_retry_after(response.headers.get("retry-after")) or wait
    await deps.ledger.count("delivery:retried")
    await deps.ledger.log(
        ref,
        job_id,
        "worker",
        "event.retry",
        id=event_id,
        url=url,
        status=status,
        attempt=attempt,
        retry_in=wait,
    )
    raise DeliveryRetry(wait)
