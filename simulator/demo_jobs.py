"""The demo's jobs: submitted through the receiver's API as any caller submits, then watched
through the same API until every one has finished."""

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from simulator.app import Simulator
from simulator.demo_faults import Scenario
from worker.status import FINAL, Status

PROMPTS = (
    "a lighthouse on a basalt cliff at dawn, long exposure",
    "an orange cat asleep on a stack of vinyl records",
    "a paper boat crossing a rain puddle, macro photograph",
    "a brutalist library lit by sodium lamps at night",
    "a hot-air balloon over terraced rice fields",
)
ASPECT_RATIOS = ("16:9", "1:1", "9:16")
REFRESH = 0.25  # seconds between looks at the jobs
SEND_WAIT = 30.0  # seconds a job may wait to be sent to Apiframe before the next is submitted
ENDED = frozenset(status.value for status in FINAL)


class DemoError(Exception):
    """The demo cannot go on; the message says why."""


@dataclass
class Tracked:
    """One submitted job: its planned fault, and its record as `GET /jobs/{id}` last showed it."""

    n: int
    scenario: Scenario
    ref: str  # the job's name in imagedock's ledger, known even before Apiframe's job id
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def job_id(self) -> str:
        return str(self.record.get("jobId") or "")

    @property
    def status(self) -> str:
        return str(self.record.get("status", Status.QUEUED))

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def as_planned(self) -> bool:
        return self.finished and self.scenario.met_by(self.record)


Show = Callable[[list[Tracked]], None]


async def submit_all(
    api: httpx.AsyncClient,
    scenarios: list[Scenario],
    simulator: Simulator | None,
    show: Show,
    stopped: asyncio.Event,
) -> list[Tracked]:
    """Submit one job per scenario, one at a time: each fault is planned on the simulator just
    before its own job is submitted, so it lands on that job alone."""
    run = secrets.token_hex(4)  # a fresh Idempotency-Key per run, so each run submits anew
    tracked: list[Tracked] = []
    for n, scenario in enumerate(scenarios):
        if stopped.is_set():
            break
        if simulator is not None:
            simulator.plan_next_job(**scenario.knobs)
        body = {
            "prompt": PROMPTS[n % len(PROMPTS)],
            "grokImagineParams": {"aspect_ratio": ASPECT_RATIOS[n % len(ASPECT_RATIOS)]},
            "metadata": {"demo": "yes", "fault": scenario.fault},
        }
        try:
            response = await api.post(
                "/jobs", json=body, headers={"Idempotency-Key": f"demo-{run}-{n}"}
            )
        except httpx.HTTPError:
            if stopped.is_set():  # the receiver is stopping too
                break
            raise
        if response.status_code != 202:
            raise DemoError(f"the receiver refused job {n + 1}: {response.text[:300]}")
        accepted = response.json()
        # Sent before the next fault is planned: imagedock sends several jobs at once, and
        # Apiframe would meet them in any order.
        record = await sent(api, accepted["ref"], stopped)
        tracked.append(Tracked(n, scenario, accepted["ref"], record or accepted))
        show(tracked)
    return tracked


async def sent(api: httpx.AsyncClient, ref: str, stopped: asyncio.Event) -> dict[str, Any] | None:
    """The job `ref` once imagedock has sent it to Apiframe (or it ended first); None if the
    demo is stopped, or it waits past `SEND_WAIT` seconds."""
    deadline = time.monotonic() + SEND_WAIT
    while not stopped.is_set() and time.monotonic() < deadline:
        record = await record_of(api, ref)
        if record["jobId"] is not None or record["status"] in ENDED:
            return record
        await asyncio.sleep(0.02)
    return None


async def watch(
    api: httpx.AsyncClient,
    tracked: list[Tracked],
    show: Show,
    stopped: asyncio.Event,
    limit: float,
) -> bool:
    """Look at every job until all have finished (True), or `limit` seconds pass or a stop
    comes (False)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            records = await asyncio.gather(*(record_of(api, job.ref) for job in tracked))
        except httpx.HTTPError:
            if stopped.is_set():
                return False
            raise
        for job, record in zip(tracked, records, strict=True):
            job.record = record
        show(tracked)
        if all(job.finished for job in tracked):
            return True
        if stopped.is_set() or time.monotonic() > deadline:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), REFRESH)


async def record_of(api: httpx.AsyncClient, ref: str) -> dict[str, Any]:
    response = await api.get(f"/jobs/{ref}")
    response.raise_for_status()
    record: dict[str, Any] = response.json()
    return record


async def webhook_figures(api: httpx.AsyncClient) -> dict[str, int]:
    """What the receiver counted of webhooks, from `GET /metrics` as an operator reads it:
    each outcome (accepted, duplicate, early, unsigned, rejected), each reason for a refusal
    (`rejected:<reason>`), and `missed`: jobs the poller found finished with no webhook."""
    response = await api.get("/metrics")
    response.raise_for_status()
    figures: dict[str, int] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "imagedock_webhooks_received_total":
                figures[sample.labels["outcome"]] = round(sample.value)
            elif sample.name == "imagedock_webhooks_rejected_total":
                figures[f"rejected:{sample.labels['reason']}"] = round(sample.value)
            elif sample.name == "imagedock_webhooks_missed_total":
                figures["missed"] = round(sample.value)
    return figures
