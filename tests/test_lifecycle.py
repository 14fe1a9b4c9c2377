"""Stopping and probing the processes as an orchestrator does: a receiver told to stop finishes
the request in flight and exits 0; /readyz follows Redis; a worker told to stop mid-landing
either finishes within its stop wait or leaves the landing queued for the next worker at once,
with the object, the state and the event id each as if nothing had happened."""

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix

from simulator.local_s3 import free_port
from tests.support.processes import env_of, receiver_process, running, worker_env
from tests.support.stack import API_TOKEN, EVENT_SECRET, Stack
from tests.support.waiting import wait_for
from worker.ledger.keys import LANDING_QUEUE
from worker.runtime.queue import landing_id

MiB = 1024 * 1024


def receiver_env(redis_url: str) -> dict[str, str]:
    return {
        **worker_env(redis_url),
        "IMAGEDOCK_API_TOKEN": API_TOKEN,
        "IMAGEDOCK_PUBLIC_URL": "http://127.0.0.1:9",
    }


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_stopped_receiver_finishes_the_request_in_flight_and_exits_0(redis_url: str) -> None:
    """SIGTERM while a request's body is half sent: new connections are refused, the request
    in flight is answered in full, and the process exits 0."""
    with receiver_process(receiver_env(redis_url)) as (receiver, port):
        # A webhook for a job nobody knows: answered 404 once its whole body has been read.
        body = b'{"jobId": "6f1c1d5e-4c1e-4f7a-9a52-2b1d2c3e4f50", "status": "QUEUED"}'
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (
            "POST /webhooks/apiframe HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        client.sendall(head.encode() + body[:10])
        receiver.send_signal(signal.SIGTERM)
        wait_for(lambda: refuses(port), "the receiver to stop accepting")
        client.sendall(body[10:])
        answer = read_all(client)
        client.close()
        output, _ = receiver.communicate(timeout=30)
    assert answer.startswith("HTTP/1.1 404"), answer
    assert "no submission of imagedock's has this job id" in answer
    assert receiver.returncode == 0, output


def read_all(client: socket.socket) -> str:
    """Everything the server sends until it closes the connection (an answer may come in
    several segments)."""
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received.decode()


def children(pid: int) -> list[int]:
    """The server processes `pid` spawned (not multiprocessing's resource tracker)."""
    found = [int(n) for n in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [n for n in found if b"spawn_main" in Path(f"/proc/{n}/cmdline").read_bytes()]


def test_several_receiver_processes_share_the_port_and_stop_together(redis_url: str) -> None:
    """`--workers 2`: two processes answer on one port, each ready with clients of its own,
    and SIGTERM stops them all with status 0."""
    with receiver_process(receiver_env(redis_url), "--workers", "2") as (receiver, port):
        wait_for(lambda: len(children(receiver.pid)) == 2, "two receiver processes")
        served = {
            httpx.get(
                f"http://127.0.0.1:{port}/readyz", headers={"Connection": "close"}
            ).status_code
            for _ in range(20)
        }
        assert served == {200}
        workers = children(receiver.pid)
        receiver.send_signal(signal.SIGTERM)
        output, _ = receiver.communicate(timeout=60)
    assert receiver.returncode == 0, output
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert output.count("Application startup complete") == 2


def test_readyz_follows_redis_while_healthz_does_not() -> None:
    """With its Redis gone the receiver is alive (/healthz 200) but not ready (/readyz 503,
    naming Redis); it is ready again when Redis is back."""
    redis_server = shutil.which("redis-server")
    assert redis_server
    redis_port, folder = free_port(), tempfile.mkdtemp()
    redis_command = [redis_server, "--port", str(redis_port), "--save", "", "--dir", folder]
    url = f"redis://127.0.0.1:{redis_port}/0"
    first = subprocess.Popen(redis_command, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: not refuses(redis_port), "redis")
        with receiver_process(receiver_env(url)) as (_, port):
            base = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{base}/readyz").status_code == 200
            first.terminate()
            first.wait(10)
            gone = httpx.get(f"{base}/readyz", timeout=10)
            assert gone.status_code == 503
            assert "Redis" in gone.json()["error"]
            assert httpx.get(f"{base}/healthz").status_code == 200
            token = {"Authorization": f"Bearer {API_TOKEN}"}
            listed = httpx.get(f"{base}/jobs", headers=token, timeout=30)
            assert listed.status_code == 503  # not a 500: the caller may retry
            assert "Redis" in listed.json()["error"]
            assert listed.headers["retry-after"]
            second = subprocess.Popen(redis_command, stdout=subprocess.DEVNULL)
            try:
                wait_for(
                    lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200, "ready"
                )
            finally:
                second.terminate()
                second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        shutil.rmtree(folder, ignore_errors=True)


async def landing_started(stack: Stack, job_id: str, worker: subprocess.Popen[str]) -> None:
    """Until `worker` has claimed the job's landing."""
    key = in_progress_key_prefix + landing_id(job_id)
    for _ in range(600):
        assert worker.poll() is None, worker.communicate()[0]
        if await stack.redis.exists(key):
            return
        await asyncio.sleep(0.05)
    worker.kill()
    raise AssertionError(f"no worker claimed the landing: {worker.communicate()[0][-3000:]}")


async def big_slow_job(stack: Stack) -> str:
    """A completed job whose one 6 MiB image downloads over about three seconds."""
    stack.sim.config.image_bytes = 6 * MiB
    stack.sim.config.cdn_chunk_delay = 0.03
    job_id: str = (await stack.submit())["jobId"]
    await stack.sim.settle()
    return job_id


@pytest.mark.parametrize("stop_wait", ["30", "0"])
async def test_a_worker_stopped_mid_landing_loses_and_repeats_nothing(
    stack: Stack, stop_wait: str
) -> None:
    """SIGTERM while a worker lands a large image: with time to finish, it lands it and exits 0;
    without, it exits 0 leaving the landing queued and unclaimed, and the next worker lands it.
    Either way the object is whole, the job LANDED once, and its event delivered once."""
    job_id = await big_slow_job(stack)
    command = [sys.executable, "-m", "imagedock", "worker"]
    env = env_of(
        stack,
        IMAGEDOCK_STOP_WAIT=stop_wait,
        IMAGEDOCK_DOWNLOAD_HOSTS="127.0.0.1",
        IMAGEDOCK_EVENT_URLS=stack.events.url,
        IMAGEDOCK_EVENT_SECRET=EVENT_SECRET,
    )
    with running(command, env) as worker:
        await landing_started(stack, job_id, worker)
        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(worker.communicate, timeout=60)
    assert worker.returncode == 0, output
    job = await stack.job(job_id)
    if stop_wait == "0":
        assert job["status"] == "COMPLETED", f"the stopped worker's output:\n{output[-4000:]}"
        claimed = await stack.redis.exists(in_progress_key_prefix + landing_id(job_id))
        assert not claimed, f"the stopped worker left its claim; its output:\n{output[-4000:]}"
        assert await stack.redis.exists(job_key_prefix + landing_id(job_id))
        assert await stack.redis.zscore(LANDING_QUEUE, landing_id(job_id)) is not None
    else:
        assert job["status"] == "LANDED"  # finished by the worker that was stopping
    await stack.run_worker(settle=False)  # the next worker: whatever was left, it does
    job = await stack.job(job_id)
    assert job["status"] == "LANDED"
    [stored] = job["objects"]
    assert stored["bytes"] >= 6 * MiB
    assert len(stack.object(stored["key"])) == stored["bytes"]
    assert (await stack.log_events(job_id)).count("job.landed") == 1
    landed = stack.delivered("job.landed")
    assert len(landed) == 1
