"""`imagedock demo`, run as a person runs it, and the simulator's per-job fault plan under it."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from simulator.demo_faults import planned
from simulator.local_s3 import free_port
from tests.support.stack import API_KEY, Apiframe, Sink
from worker.apiframe.models import MODEL as GROK

JOBS = 8
GENERATE = "/v2/images/generate"


def demo_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """This environment less any imagedock setting (no Apiframe key: the simulator), on the
    tests' Redis (the demo moves to a database of its own), its files under `tmp_path`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("IMAGEDOCK_")}
    return {**env, "IMAGEDOCK_REDIS_URL": redis_url, "TMPDIR": str(tmp_path)}


def demo_command(*args: str, jobs: int = JOBS) -> list[str]:
    return [sys.executable, "-m", "imagedock", "demo", "--jobs", str(jobs), *args]


def row_of(output: str, fault: str) -> str:
    """The first line of the results table for a job with this fault."""
    found = re.search(rf"^ [0-9a-f-]{{36}} +{re.escape(fault)} .*$", output, re.MULTILINE)
    assert found, f"no row for {fault!r} in:\n{output}"
    return found.group(0)


def test_the_demo_lands_every_job_as_its_fault_predicts(redis_url: str, tmp_path: Path) -> None:
    """Each fault lands on a job (and the receiver's counts show it did), dropped webhooks are
    recovered by polling, the failing job shows its reason, landed jobs their S3 keys, and the
    dashboard's URL is printed."""
    done = subprocess.run(
        demo_command("--exit"),
        env=demo_env(redis_url, tmp_path),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    output = done.stdout
    assert done.returncode == 0, output + done.stderr
    assert "Traceback" not in done.stderr
    for scenario in planned(JOBS, simulated=True):
        row = row_of(output, scenario.fault)
        assert scenario.status in row
        if scenario.via:
            assert f" {scenario.via} " in row
    assert "The prompt was refused by the content policy." in row_of(output, "failed at Apiframe")
    assert re.search(
        r"dropped webhooks +LANDED +poll +s3://imagedock-demo/apiframe/[0-9a-f-]{36}/1\.png",
        output,
    )
    counted = re.search(r"counts them: .*\nWebhooks missed: (\d+)", output)
    assert counted, output
    for seen in ("1 early", "1 unsigned", "1 refused (bad signature)"):
        assert seen in counted.group(0)
    assert int(counted.group(1)) >= 2  # the dropped and the forged
    assert "✓ Every job ended as its fault predicts" in output
    assert re.search(r"^ +Dashboard +http://127\.0\.0\.1:\d+/$", output, re.MULTILINE)
    assert re.search(r"^ +API token +\S{24,} ", output, re.MULTILINE)


def children_named(pid: int, name: str) -> list[int]:
    """The processes whose parent is `pid` and whose command is `name`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            command = fields[0].split("(", 1)[1]
        except (OSError, IndexError):
            continue  # a process that ended while we looked
        if command == name and int(fields[1].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stop(demo: subprocess.Popen[str]) -> None:
    """Stop a demo still running as a person would, so its SeaweedFS stops with it; kill it
    only if that fails."""
    if demo.poll() is None:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_ctrl_c_stops_the_demo_and_everything_it_started(redis_url: str, tmp_path: Path) -> None:
    """While the demo serves the dashboard, a second demo on the same Redis refuses to start
    (rather than empty the first one's database), and SIGINT ends the first with status 0, no
    traceback, and its SeaweedFS process stopped."""
    lines: list[str] = []
    with subprocess.Popen(
        demo_command(),
        env=demo_env(redis_url, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as demo:
        reader = threading.Thread(target=lambda: lines.extend(demo.stdout or []), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 120
            while not any("Serving until Ctrl-C" in line for line in lines):
                assert demo.poll() is None, "".join(lines)
                assert time.monotonic() < deadline, "".join(lines)
                time.sleep(0.1)
            [weed] = children_named(demo.pid, "weed")
            second = subprocess.run(
                demo_command("--exit", jobs=1),
                env=demo_env(redis_url, tmp_path),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert second.returncode == 1, second.stdout + second.stderr
            assert f"another imagedock demo ({socket.gethostname()}:{demo.pid})" in second.stderr
            demo.send_signal(signal.SIGINT)
            status = demo.wait(timeout=60)
        finally:
            stop(demo)
        reader.join(timeout=5)
        errors = demo.stderr.read() if demo.stderr else ""
    assert status == 0, "".join(lines) + errors
    assert "Traceback" not in errors
    assert "Stopped." in "".join(lines)
    assert not alive(weed)


async def test_with_an_apiframe_key_and_public_url_the_demo_plans_no_faults(
    apiframe: Apiframe, redis_url: str, tmp_path: Path
) -> None:
    """With IMAGEDOCK_APIFRAME_KEY and IMAGEDOCK_PUBLIC_URL set, the demo starts no simulator
    and plans no fault: its jobs go to the Apiframe the settings name, which sends every webhook
    to the public URL, and they all land."""
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    env = {
        **demo_env(redis_url, tmp_path),
        "IMAGEDOCK_APIFRAME_KEY": API_KEY,
        "IMAGEDOCK_APIFRAME_URL": apiframe.url,
        "IMAGEDOCK_PUBLIC_URL": public_url,
        "IMAGEDOCK_DOWNLOAD_HOSTS": "127.0.0.1",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        demo_command("--exit", "--port", str(port), jobs=3),
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "simulated" not in done.stdout
    assert done.stdout.count("none (real Apiframe)   LANDED") == 3
    assert len(apiframe.sim.submissions()) == 3
    webhooks = apiframe.sim.deliveries
    assert webhooks
    assert all(hook.url.startswith(f"{public_url}/webhooks/apiframe?ref=") for hook in webhooks)
    assert all(hook.status == 200 for hook in webhooks)


async def test_a_planned_fault_applies_to_the_next_job_alone(
    apiframe: Apiframe, http: httpx.AsyncClient, sink: Sink
) -> None:
    """`plan_next_job` gives the next job its knobs for its whole life (its outcome and its
    webhooks); the job after it runs with the simulator's own config."""
    apiframe.sim.plan_next_job(failure_rate=1.0, unsigned=True)
    ids = []
    for _ in range(2):
        body = {"model": GROK, "prompt": "a red kite", "webhookUrl": sink.url}
        ids.append((await http.post(apiframe.url + GENERATE, json=body)).json()["jobId"])
    await apiframe.sim.settle()
    planned_job, plain_job = (apiframe.sim.jobs[job_id] for job_id in ids)
    assert (planned_job.status, plain_job.status) == ("FAILED", "COMPLETED")
    for delivery in apiframe.sim.deliveries:
        signed = "X-Webhook-Signature" in delivery.headers
        assert signed == (delivery.job_id == plain_job.id)
    assert apiframe.sim.config.failure_rate == 0.0
    with pytest.raises(TypeError, match="no such simulator knob: drop"):
        apiframe.sim.plan_next_job(drop=1.0)
