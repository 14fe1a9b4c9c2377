"""Logs a person can follow: every job-log entry is a log line, one canonical line per job, and
no secret ever reaches a log line or an error body."""

import json
import logging
import subprocess
import sys
from collections import Counter
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from simulator.local_s3 import SECRET_KEY
from tests.support.stack import API_KEY, API_TOKEN, EVENT_SECRET, Stack
from tests.support.waiting import eventually
from worker.apiframe.signatures import sign

SECRETS = (API_KEY, API_TOKEN, EVENT_SECRET, EVENT_SECRET.removeprefix("whsec_"), SECRET_KEY)


def lines(logs: Sequence[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == event]


async def test_a_landed_job_has_one_canonical_line(stack: Stack) -> None:
    """`job.landed` once, with its duration, bytes, images, keys and how it was learned of."""
    stack.sim.config.images_per_job = 2
    with capture_logs() as logs:
        job_id = (await stack.submit())["jobId"]
        await stack.run_worker()
        await stack.run_worker()  # a second landing changes nothing and says nothing
    [landed] = lines(logs, "job.landed")
    job = await stack.job(job_id)
    assert (landed["job_id"], landed["ref"], landed["via"]) == (job_id, job["ref"], "webhook")
    assert landed["files"] == 2
    assert landed["keys"] == [stored["key"] for stored in job["objects"]]
    assert landed["bytes"] == sum(stored["bytes"] for stored in job["objects"])
    assert isinstance(landed["duration_ms"], int)
    assert landed["duration_ms"] >= landed["landing_ms"] >= 0
    assert landed["log_level"] == "info"


async def test_a_job_landed_through_polling_says_so(stack: Stack) -> None:
    """With its webhooks lost, the canonical line says the job was found by polling."""
    stack.sim.config.drop_rate = 1.0
    with capture_logs() as logs:
        await stack.submit()
        await stack.sim.settle()
        await stack.wait_until_due()
        await stack.poll()
        await stack.run_worker()
    [landed] = lines(logs, "job.landed")
    assert landed["via"] == "poll"
    [missed] = lines(logs, "webhook.missed")
    assert missed["log_level"] == "warning"


async def test_a_failed_job_has_one_canonical_line_with_its_reason(stack: Stack) -> None:
    """`job.failed` once, at warning level, with Apiframe's reason."""
    stack.sim.config.failure_rate = 1.0
    with capture_logs() as logs:
        job_id = (await stack.submit())["jobId"]
        await stack.run_worker()
    [failed] = lines(logs, "job.failed")
    assert (failed["job_id"], failed["status"], failed["via"]) == (job_id, "FAILED", "webhook")
    assert failed["reason"] == stack.sim.config.failure_message
    assert (failed["files"], failed["keys"], failed["log_level"]) == (0, [], "warning")
    assert lines(logs, "job.landed") == []


async def test_every_job_log_entry_is_a_log_line(stack: Stack) -> None:
    """What the ledger records in Redis, stdout records too, entry for entry."""
    with capture_logs() as logs:
        job_id = (await stack.submit())["jobId"]
        await stack.run_worker()
    entries = await stack.ledger.history.after(count=1000)
    assert len(entries) > 5
    logged = Counter((line["event"], line.get("ref"), line.get("job_id")) for line in logs)
    recorded = Counter((entry.event, entry.ref or None, entry.job_id or None) for entry in entries)
    assert recorded == logged & recorded  # each entry once, whatever else was logged
    assert job_id in {line.get("job_id") for line in logs}


async def test_no_secret_reaches_a_log_line_or_an_error_body(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys, tokens and signing secrets stay out of logs and answers, wherever things go wrong."""
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    with capture_logs() as logs:
        job_id = (await stack.submit())["jobId"]
        await stack.run_worker()
        # A caller with the wrong token, a forged webhook, and Apiframe refusing imagedock's key.
        wrong = await stack.api.get("/jobs", headers={"Authorization": f"Bearer {API_TOKEN}x"})
        body = json.dumps({"jobId": job_id, "status": "COMPLETED"}).encode()
        forged = await stack.api.post(
            "/webhooks/apiframe",
            content=body,
            headers={"content-type": "application/json", "x-webhook-signature": sign(body, "x")},
        )
        stack.sim.fail_next(401, path="/v2/images/generate")
        refused = await stack.api.post("/jobs", json={"prompt": "refused"})

        async def paused() -> bool:
            return "refused imagedock's API key" in (await stack.api.get("/stats")).text

        await eventually(paused, "submitting paused for the refused key", 10)
        waiting = await stack.api.get(f"/jobs/{refused.json()['ref']}")
        stats = await stack.api.get("/stats")
        answers += [wrong.text, forged.text, refused.text, waiting.text, stats.text]
        assert (wrong.status_code, forged.status_code, refused.status_code) == (401, 401, 202)
        assert "401" in waiting.json()["error"]
    assert stack.delivered("job.landed")
    written = [json.dumps(line, default=str) for line in logs] + [caplog.text] + answers
    for secret in SECRETS:
        assert not [text for text in written if secret in text], secret


LOG_AN_ERROR = """
import logging, sys
import structlog
from worker.structured_logging import configure_logging

configure_logging("INFO", stream=sys.stdout, json=True)
secret = "whsec_frame_local_secret"  # a local of the failing frame, as settings and keys are
try:
    raise ValueError("boom")
except ValueError:
    structlog.get_logger("worker").error("worker.died", exc_info=True)
    logging.getLogger("arq.worker").exception("job failed")
"""


def test_tracebacks_are_structured_fields_in_one_format() -> None:
    """imagedock's own lines and arq's or uvicorn's records come out as the same JSON, with a
    traceback as frames, not a block of text, and without the frames' local variables."""
    run = subprocess.run(
        [sys.executable, "-c", LOG_AN_ERROR], capture_output=True, text=True, check=True
    )
    assert "whsec_frame_local_secret" not in run.stdout
    ours, arqs = (json.loads(line) for line in run.stdout.splitlines())
    assert (ours["event"], arqs["event"]) == ("worker.died", "job failed")
    for line in (ours, arqs):
        assert line["level"] == "error"
        assert line["exception"][0]["exc_type"] == "ValueError"
        assert line["exception"][0]["frames"]


HOME = Path(__file__).resolve().parents[1]
INTERLEAVE = """
import logging, sys, threading
import structlog
from worker.structured_logging import configure_logging

configure_logging("INFO", stream=sys.stdout, json=True)

def chatter(n):
    for i in range(300):
        logging.getLogger("botocore").info("stdlib line %d from thread %d", i, n)
        structlog.get_logger("worker").info("structlog.line", i=i, thread=n, pad="x" * 200)

threads = [threading.Thread(target=chatter, args=(n,)) for n in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
"""


def test_lines_from_many_threads_never_interleave() -> None:
    """stdlib and structlog records written at once from eight threads come out as whole JSON
    lines, one record each."""
    done = subprocess.run(
        [sys.executable, "-c", INTERLEAVE], capture_output=True, text=True, check=True, cwd=HOME
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 8 * 300 * 2
    assert all(isinstance(json.loads(line), dict) for line in lines)
