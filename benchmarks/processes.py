"""The processes a benchmark runs beside itself: a private Redis, imagedock's commands, reference
servers, nginx, and what each of them spent in CPU time."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis

from simulator.local_s3 import free_port

PYTHON = sys.executable
API_KEY = "afk_bench_0000000000000000000000000000000000"
API_TOKEN = "imagedock-bench-token"  # noqa: S105 - for a private loopback run
TICKS = os.sysconf("SC_CLK_TCK")


def wait_for(ready: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Until `ready()` holds, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} was not ready within {timeout:g} s")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.TransportError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the benchmark's own on a free loopback port, nothing kept on disk;
    yields its URL (database 0)."""
    port, directory = free_port(), tempfile.mkdtemp(prefix="imagedock-bench-redis-")
    args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    args += ["--appendonly", "no", "--dir", directory, "--logfile", f"{directory}/redis.log"]
    process = subprocess.Popen(args)  # noqa: S603 - our own arguments
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        wait_for(lambda: ping(client), "redis-server")
        client.close()
        yield url
    finally:
        stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def redis_info(url: str, section: str) -> dict[str, Any]:
    """One section of Redis's INFO, from a connection of its own."""
    client = redis.Redis.from_url(url)
    try:
        answer: dict[str, Any] = client.info(section)  # type: ignore[assignment]
        return answer
    finally:
        client.close()


def redis_pid(url: str) -> int:
    return int(redis_info(url, "server")["process_id"])


def imagedock_env(redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of an imagedock process: the variables given (as IMAGEDOCK_<NAME>) over
    what every benchmark shares. Warnings only, unless a benchmark asks for more."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEDOCK_")}
    env.update(
        IMAGEDOCK_REDIS_URL=redis_url,
        IMAGEDOCK_APIFRAME_KEY=API_KEY,
        IMAGEDOCK_API_TOKEN=API_TOKEN,
        IMAGEDOCK_APIFRAME_URL="http://127.0.0.1:9",
        IMAGEDOCK_LOG_LEVEL="WARNING",
    )
    env.update({f"IMAGEDOCK_{name.upper()}": value for name, value in settings.items()})
    return env


def start(
    args: Sequence[str], env: Mapping[str, str] | None = None, *, log: Path | None = None
) -> "subprocess.Popen[bytes]":
    """A process whose output goes to `log` (or nowhere): never to a pipe nobody reads."""
    out = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(  # noqa: S603 - our own arguments
        list(args), env=dict(env) if env else None, stdout=out, stderr=subprocess.STDOUT
    )


def stop(process: "subprocess.Popen[bytes]", timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(*processes: "subprocess.Popen[bytes]") -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            stop(process)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def receiver(
    redis_url: str, port: int, log: Path | None = None, **settings: str
) -> "subprocess.Popen[bytes]":
    """`imagedock receiver`, as an operator runs it, ready to answer."""
    env = imagedock_env(redis_url, **settings)
    process = start([PYTHON, "-m", "imagedock", "receiver", "--port", str(port)], env, log=log)
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), "imagedock receiver")
    return process


def served(
    kind: str, port: int, processes: int, env: Mapping[str, str], log: Path | None = None
) -> list["subprocess.Popen[bytes]"]:
    """`processes` servers of `kind` (see `benchmarks.serve`) sharing `port`, each ready."""
    flags = Path(tempfile.mkdtemp(prefix="imagedock-bench-ready-"))
    started = [
        start(
            [
                PYTHON,
                "-m",
                "benchmarks.serve",
                kind,
                "--port",
                str(port),
                "--ready",
                str(flags / str(n)),
            ],
            env,
            log=log,
        )
        for n in range(processes)
    ]
    wait_for(lambda: len(list(flags.iterdir())) == processes, f"{processes} {kind} servers")
    shutil.rmtree(flags, ignore_errors=True)
    return started


NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{ default_type application/json; return 200 '{{"accepted":true}}'; }}
  }}
}}
"""


@contextmanager
def nginx(port: int) -> Iterator["subprocess.Popen[bytes]"]:
    """Debian's nginx, one worker process, answering every request with a small JSON body: a
    server far faster than any Python one, to show what the load generator can reach."""
    directory = Path(tempfile.mkdtemp(prefix="imagedock-bench-nginx-"))
    (directory / "nginx.conf").write_text(NGINX_CONF.format(dir=directory, port=port))
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    process = start(
        [binary, "-c", str(directory / "nginx.conf"), "-e", str(directory / "error.log")]
    )
    try:
        wait_for(lambda: listening(port), "nginx")
        yield process
    finally:
        stop(process)
        shutil.rmtree(directory, ignore_errors=True)
