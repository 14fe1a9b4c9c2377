"""`/metrics` exports every figure the alert rules and the Grafana dashboard read, counted from
Redis, so two receivers scraped at once show the same values; `/stats` agrees with it."""

import asyncio
import shutil
import subprocess
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from imagedock.clients import open_deps
from receiver.app import create_app
from simulator.serving import serving
from tests.support.metrics import METRICS
from tests.support.stack import Stack, fast_config
from worker.runtime.heartbeat import beat

AGE = "imagedock_oldest_unfinished_job_age_seconds"  # read at scrape time, so it moves


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        sample: Sample
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/metrics")
    assert answer.status_code == 200
    return answer.text


async def busy_stack(stack: Stack) -> None:
    """One landed job (its webhook sent twice), one failed, one refused webhook, one worker."""
    stack.sim.config.duplicates = 2
    await stack.submit()
    await stack.run_worker()
    stack.sim.config.failure_rate = 1.0
    await stack.submit()
    await stack.run_worker()
    await stack.api.post(
        "/webhooks/apiframe", json={"jobId": str(uuid.uuid4()), "status": "QUEUED"}
    )
    await beat(stack.redis, "worker-host:1")


async def test_every_metric_the_rules_read_is_exported_with_its_value(stack: Stack) -> None:
    """The exported families are exactly the documented ones, with the work done counted."""
    await busy_stack(stack)
    text = await scrape(stack.receiver_url)
    kinds = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert {
        f"{name}_total" if kind == "counter" else name: kind for name, kind in kinds.items()
    } == METRICS
    found = samples(text)
    model = "grok-imagine-image"
    assert value(found, "imagedock_jobs_submitted_total") == 2
    assert value(found, "imagedock_jobs_landed_total", model=model) == 1
    assert value(found, "imagedock_jobs_failed_total", model=model) == 1
    # Credits: what the landed job cost; the failed one was refunded.
    cost = stack.sim.config.credit_cost
    assert value(found, "imagedock_credits_spent_total", model=model) == cost
    assert value(found, "imagedock_credits_spent_by_route_total", route="images/generate") == cost
    assert value(found, "imagedock_credits_spent_by_caller_total", caller="operator") == cost
    assert value(found, "imagedock_webhooks_received_total", outcome="accepted") == 2
    assert value(found, "imagedock_webhooks_received_total", outcome="duplicate") >= 1
    assert value(found, "imagedock_webhooks_received_total", outcome="rejected") == 1
    assert value(found, "imagedock_webhooks_rejected_total", reason="unknown_job") == 1
    assert value(found, "imagedock_jobs", status="LANDED") == 1
    assert value(found, "imagedock_jobs", status="FAILED") == 1
    assert value(found, "imagedock_landing_duration_seconds_count") == 1
    assert value(found, "imagedock_webhook_enqueue_seconds_count") == 1
    job = (await stack.api.get("/jobs", params={"status": "LANDED"})).json()["jobs"][0]
    landed_bytes = sum(stored["bytes"] for stored in job["objects"])
    assert value(found, "imagedock_landing_bytes_sum") == landed_bytes
    assert value(found, "imagedock_landing_bytes_bucket", le="+Inf") == 1
    assert value(found, "imagedock_files_landed_total", kind="image") == len(job["objects"])
    assert value(found, "imagedock_files_landed_total", kind="video") == 0
    assert value(found, "imagedock_event_deliveries_total", outcome="delivered") == 2
    assert value(found, "imagedock_workers_alive") == 1
    assert value(found, "imagedock_worker_last_heartbeat_timestamp_seconds") > 0
    assert value(found, AGE) == 0  # nothing unfinished
    # The submit queue, drained, at the stack's pace; the balance as the dispatcher read it.
    assert value(found, "imagedock_submit_in_flight") == 0
    assert value(found, "imagedock_submit_rate") == stack.settings.submit_rate
    assert value(found, "imagedock_submit_paused_seconds") == 0
    credits = value(found, "imagedock_credits_available")
    assert stack.sim.config.credits <= credits <= fast_config().credits
    stats = (await stack.api.get("/stats")).json()
    assert (stats["submitted"], stats["landed"], stats["failed"]) == (2, 1, 1)
    assert stats["webhooksRejected"] == {"unknown_job": 1}
    assert (stats["creditsSpent"], stats["creditsByCaller"]) == (cost, {"operator": cost})


async def test_two_receivers_show_the_same_figures(stack: Stack) -> None:
    """A second receiver process, scraped after the first, reports every value the same."""
    await busy_stack(stack)
    stack.sim.config.failure_rate, stack.sim.config.stall = 0.0, True
    await stack.submit()  # one unfinished, so the age is not zero
    async with serving(create_app(stack.settings, open_deps)) as other:
        first, second = samples(await scrape(stack.receiver_url)), samples(await scrape(other))
    moving = {key for key in first if key[0] == AGE}
    assert {k: v for k, v in first.items() if k not in moving} == {
        k: v for k, v in second.items() if k not in moving
    }
    [age] = [first[key] for key in moving]
    assert age > 0


async def test_promtool_accepts_the_exposition(stack: Stack) -> None:
    """`promtool check metrics` finds nothing to lint in what `/metrics` serves."""
    await busy_stack(stack)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not on PATH: install Debian's prometheus package"
    exposition = await scrape(stack.receiver_url)
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=exposition,
        text=True,
        capture_output=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
