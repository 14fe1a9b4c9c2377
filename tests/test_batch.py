"""Jobs in bulk: `POST /jobs/batch` and `imagedock submit --from FILE.jsonl`, each job accepted
or refused on its own, and nothing accepted twice when a batch is sent again."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from tests.support.processes import env_of
from tests.support.stack import Stack
from worker.ledger.keys import WAITING_CALLERS


async def test_a_batch_accepts_each_job_on_its_own(stack: Stack) -> None:
    """Good jobs are accepted and land; a bad one is refused naming its field, and refuses
    nothing else. Sent again, the batch's keyed jobs name the same jobs."""
    jobs = [
        {"prompt": "a heron", "idempotencyKey": "heron"},
        {"prompt": "", "idempotencyKey": "empty"},
        {"prompt": "a crane", "priority": "high", "metadata": {"sku": "c-1"}},
    ]
    first = await stack.api.post("/jobs/batch", json={"jobs": jobs})
    assert first.status_code == 202, first.text
    answer = first.json()
    assert (answer["accepted"], answer["refused"]) == (2, 1)
    heron, empty, crane = answer["jobs"]
    assert (heron["status"], heron["jobId"]) == ("QUEUED", None)
    assert "prompt" in empty["details"]
    assert "ref" not in empty
    again = (await stack.api.post("/jobs/batch", json={"jobs": jobs[:1]})).json()
    assert again["jobs"][0]["ref"] == heron["ref"]
    await stack.run_worker()
    for ref in (heron["ref"], crane["ref"]):
        assert (await stack.job(ref))["status"] == "LANDED"
    assert (await stack.job(crane["ref"]))["metadata"] == {"sku": "c-1"}
    assert len(stack.sim.jobs) == 2


async def test_a_batch_that_is_not_one_is_refused_whole(stack: Stack) -> None:
    """Over 1,000 jobs, a key used twice, or no list: a 400 naming the field, nothing kept."""
    too_many = {"jobs": [{"prompt": f"p{n}"} for n in range(1001)]}
    repeated = {
        "jobs": [{"prompt": "a", "idempotencyKey": "k"}, {"prompt": "b", "idempotencyKey": "k"}]
    }
    for body, field in (
        (too_many, "jobs"),
        (repeated, "jobs.1.idempotencyKey"),
        ({"jobs": {"prompt": "x"}}, "jobs"),
        ({"jobs": [{"prompt": "x"}, "y"]}, "jobs.1"),
        ({"jobs": []}, "jobs"),
    ):
        answer = await stack.api.post("/jobs/batch", json=body)
        assert answer.status_code == 400, answer.text
        assert field in answer.json()["details"], (field, answer.text)
    assert (await stack.api.get("/jobs")).json()["jobs"] == []
    assert await stack.redis.llen(WAITING_CALLERS) == 0  # type: ignore[misc]


async def test_submit_from_a_file_accepts_each_line(stack: Stack, tmp_path: Path) -> None:
    """`imagedock submit --from FILE.jsonl` prints each line's outcome as a JSON line, refuses
    a bad line by name without stopping, and exits 1 to say one was refused."""
    source = tmp_path / "catalogue.jsonl"
    source.write_text(
        json.dumps({"prompt": "a lamp", "idempotencyKey": "lamp"})
        + "\n\nnot json\n"
        + json.dumps({"prompt": "a chair", "grokImagineParams": {"aspect_ratio": "5:4"}})
        + "\n"
        + json.dumps({"prompt": "a desk"})
        + "\n"
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "imagedock", "submit", "--from", str(source)],
        env=env_of(stack),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [outcome["line"] for outcome in outcomes] == [1, 3, 4, 5]
    assert [outcome.get("status") for outcome in outcomes] == ["QUEUED", None, None, "QUEUED"]
    assert outcomes[1]["error"] == "not JSON"
    assert "aspect_ratio" in json.dumps(outcomes[2]["details"])
    assert "2 accepted, 2 refused" in done.stderr
    await stack.run_worker()
    assert (await stack.job(outcomes[0]["ref"]))["status"] == "LANDED"
