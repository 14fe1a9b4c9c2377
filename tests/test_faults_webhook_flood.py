"""Ten thousand webhooks, duplicate and forged, mixed with real ones, sent over bare keep-alive
connections while a worker lands: each real job lands once with one event, the forged add
nothing and are each counted, and /healthz answers throughout."""

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.ledger import counters, recent
from tests.support.stack import Stack
from tests.support.webhooks import HOOK, rejected, signed
from tests.support.wire import wire_to
from worker.sinks.body import event_id

FLOOD = 5_000
KINDS = ("real", "bad_signature", "unknown_signed", "unknown_unsigned", "other_job")
ANSWERS = {
    "real": 200,
    "bad_signature": 401,
    "unknown_signed": 404,
    "unknown_unsigned": 404,
    "other_job": 409,
}


@dataclass(frozen=True)
class Hook:
    kind: str
    body: bytes
    headers: dict[str, str]
    ref: str | None
    job_id: str  # the job the body names


def flood_of(stack: Stack, real: list[dict[str, Any]], count: int) -> list[Hook]:
    """`count` webhooks, a fifth of each kind, shuffled: Apiframe's real completed webhook for
    each real job (sent many times); the same body signed with another key and naming other
    images; completed webhooks for job ids imagedock never submitted, signed without a ref
    and unsigned with a ref of the right shape; and a real job's signed webhook posted on
    another real job's ref."""
    import random

    rng = random.Random(7)
    unknown = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(50)]

    def completed(job_id: str, images: list[str]) -> dict[str, Any]:
        return {
            "event": "completed",
            "jobId": job_id,
            "status": "COMPLETED",
            "progress": 100,
            "result": {"images": images},
            "model": "grok-imagine-image",
        }

    hooks = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        owner = real[n // len(KINDS) % len(real)]
        urls = stack.sim.jobs[owner["jobId"]].image_urls
        if kind == "real":
            body, headers = signed(completed(owner["jobId"], urls))
            hooks.append(Hook(kind, body, headers, owner["ref"], owner["jobId"]))
        elif kind == "bad_signature":
            forged = completed(owner["jobId"], ["http://127.0.0.1:9/evil.png"])
            body, headers = signed(forged, key="afk_someone-else-entirely")
            hooks.append(Hook(kind, body, headers, owner["ref"], owner["jobId"]))
        elif kind == "unknown_signed":
            stranger = rng.choice(unknown)
            body, headers = signed(completed(stranger, urls))
            hooks.append(Hook(kind, body, headers, None, stranger))
        elif kind == "unknown_unsigned":
            stranger = rng.choice(unknown)
            body, headers = signed(completed(stranger, urls))
            del headers["X-Webhook-Signature"]
            hooks.append(Hook(kind, body, headers, uuid.uuid4().hex, stranger))
        else:
            other = real[(real.index(owner) + 1) % len(real)]
            body, headers = signed(
                completed(other["jobId"], stack.sim.jobs[other["jobId"]].image_urls)
            )
            hooks.append(Hook(kind, body, headers, owner["ref"], other["jobId"]))
    rng.shuffle(hooks)
    return hooks


async def test_five_thousand_duplicate_and_forged_webhooks_land_each_real_job_once(
    stack: Stack,
) -> None:
    """5,000 webhooks, real ones many times over mixed with forged signatures, unknown job
    ids and other jobs' ids on a ref, while a worker lands: each real job lands once with
    one event; the forged ones add no record, object or log entry and are each counted as
    a rejection; /healthz answers 200 throughout."""
    stack.sim.config.drop_rate = 1.0  # imagedock hears only what this test sends
    stack.settings.landing_max_tries = 3  # a landing sent astray by a forgery ends soon
    real = [await stack.submit(f"real {n}") for n in range(10)]
    await stack.sim.settle()
    hooks = flood_of(stack, real, FLOOD)
    answered: list[tuple[str, int, str]] = []
    health: list[int] = []
    flooding = asyncio.Event()
    flooding.set()
    queue = list(reversed(hooks))

    async def sender() -> None:
        """One of 50 connections, each sending the next webhook once it has its answer."""
        async with wire_to(stack.receiver_url) as wire:
            while queue:
                hook = queue.pop()
                target = HOOK + (f"?ref={hook.ref}" if hook.ref else "")
                status, body = await wire.post(target, hook.body, hook.headers)
                answered.append((hook.kind, status, body.decode()))

    async def flood() -> None:
        try:
            await asyncio.gather(*(sender() for _ in range(50)))
        finally:
            flooding.clear()

    async def probe() -> None:
        async with httpx.AsyncClient(base_url=stack.receiver_url) as client:
            while flooding.is_set():
                health.append((await client.get("/healthz")).status_code)
                await asyncio.sleep(0.05)

    async def land() -> None:
        while flooding.is_set():
            await stack.run_worker(settle=False)
            await asyncio.sleep(0.05)

    await asyncio.gather(flood(), probe(), land())
    await stack.run_worker(settle=False)

    for kind in KINDS:
        statuses = {status for k, status, _ in answered if k == kind}
        assert statuses == {ANSWERS[kind]}, (kind, statuses)
    assert len(answered) == FLOOD
    assert all(json.loads(text)["error"] for _, status, text in answered if status >= 400)
    assert len(health) > 10
    assert set(health) == {200}
    per_kind = FLOOD // len(KINDS)
    assert await rejected(stack) == {
        "bad_signature": per_kind,
        "unknown_job": 2 * per_kind,
        "other_job": per_kind,
    }
    stats = await counters(stack.redis)
    assert (stats["webhook:accepted"], stats["webhook:duplicate"]) == (10, per_kind - 10)

    # Nothing was made for, or done to, anything but the real jobs, each landed once.
    assert sorted(r.ref for r in await recent(stack.ledger, 100)) == sorted(a["ref"] for a in real)
    copies = {a["jobId"]: 0 for a in real}
    for hook in hooks:
        if hook.kind == "real":
            copies[hook.job_id] += 1
    for answer in real:
        job = await stack.job(answer["jobId"])
        assert job["status"] == "LANDED"
        assert [o["sourceUrl"] for o in job["objects"]] == stack.sim.jobs[
            answer["jobId"]
        ].image_urls
        assert len(stack.keys(answer["jobId"])) == 2
        events = await stack.log_events(answer["jobId"])
        assert copies[answer["jobId"]] > 1
        assert events.count("webhook.accepted") == 1  # the copies were counted, not logged
        assert (events.count("image.stored"), events.count("job.landed")) == (1, 1)
    strangers = {hook.job_id for hook in hooks if hook.kind.startswith("unknown")}
    for stranger in strangers:
        assert await stack.ledger.by_job_id(stranger) is None
        assert stack.keys(stranger) == []
    assert sorted(e["id"] for e in stack.delivered()) == sorted(
        event_id(a["jobId"], "job.landed") for a in real
    )
