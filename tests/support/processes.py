"""imagedock's commands run as processes of their own, as deployed: the environment each is
started with, started and stopped, and what they log read back."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.local_s3 import ACCESS_KEY, SECRET_KEY, free_port
from tests.support import ROOT
from tests.support.stack import API_KEY, Stack
from tests.support.waiting import wait_for

# The keys a worker process's two arq workers keep in Redis while they run.
HEALTH_KEYS = ("imagedock:landing:health-check", "imagedock:polling:health-check")


def worker_env(redis_url: str) -> dict[str, str]:
    """What `imagedock worker` needs to start; nothing it reaches at start-up but Redis."""
    inherited = {k: v for k, v in os.environ.items() if k == "PATH" or k.startswith("COVERAGE")}
    return {
        **inherited,
        "IMAGEDOCK_REDIS_URL": redis_url,
        "IMAGEDOCK_APIFRAME_URL": "http://127.0.0.1:9",
        "IMAGEDOCK_APIFRAME_KEY": API_KEY,
        "IMAGEDOCK_S3_BUCKET": "images",
        "IMAGEDOCK_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "IMAGEDOCK_S3_REGION": "us-east-1",
        "IMAGEDOCK_LOG_LEVEL": "INFO",
    }


def env_of(stack: Stack, **changes: str) -> dict[str, str]:
    """The stack's settings as the environment variables a deployment would set."""
    settings = stack.settings
    return {
        **os.environ,
        "COLUMNS": "200",
        "IMAGEDOCK_REDIS_URL": settings.redis_url,
        "IMAGEDOCK_APIFRAME_URL": settings.apiframe_url,
        "IMAGEDOCK_APIFRAME_KEY": API_KEY,
        "IMAGEDOCK_PUBLIC_URL": settings.public_url,
        "IMAGEDOCK_SUBMIT_RATE": str(settings.submit_rate),
        "IMAGEDOCK_SUBMIT_CONCURRENCY": str(settings.submit_concurrency),
        "IMAGEDOCK_S3_BUCKET": settings.s3_bucket or "",
        "IMAGEDOCK_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "IMAGEDOCK_S3_REGION": "us-east-1",
        "IMAGEDOCK_S3_ADDRESSING_STYLE": "path",
        "IMAGEDOCK_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "IMAGEDOCK_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        **changes,
    }


@contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


@contextmanager
def receiver_process(
    env: dict[str, str],
    *options: str,
    program: tuple[str, ...] = (sys.executable, "-m", "imagedock"),
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`imagedock receiver` on a port of its own, once it answers `/healthz`."""
    port = free_port()
    with running([*program, "receiver", "--port", str(port), *options], env) as receiver:

        def answers() -> bool:
            assert receiver.poll() is None, receiver.stdout and receiver.stdout.read()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, "the receiver")
        yield receiver, port


@contextmanager
def worker_process(stack: Stack, output: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`imagedock worker`, as deployed, against the stack's Redis, Apiframe, S3 and sink."""
    env = stack.worker_env(
        event_retry_schedule="0,0.2,0.5,1,2,4",
        poll_after=str(stack.settings.poll_after),
        poll_max_interval="2",
        landing_backoff="0.2",
    )
    with output.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "imagedock.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextmanager
def killable_worker(stack: Stack) -> Iterator[subprocess.Popen[bytes]]:
    """`imagedock worker` against the stack, silent, killed (not stopped) if still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "imagedock.cli", "worker"],
        env=stack.worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def logged(output: Path) -> list[dict[str, Any]]:
    """The JSON lines a process has written so far."""
    lines = []
    for line in output.read_text().splitlines():
        with suppress(ValueError):
            lines.append(json.loads(line))
    return lines


def still_running(process: subprocess.Popen[bytes], output: Path) -> None:
    """Fail with the end of the process's log if it has exited."""
    if process.poll() is not None:
        tail = "\n".join(output.read_text().splitlines()[-40:])
        pytest.fail(f"the worker process exited with {process.returncode}:\n{tail}")
