"""A managed Redis: TLS (`rediss://`) with a password, named by IMAGEDOCK_REDIS_URL alone. A
worker runs over it, `imagedock check --worker` sees it, and a wrong password is refused with
a message that does not repeat the password."""

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.local_s3 import free_port
from tests.support.processes import running, worker_env

PASSWORD = "s3cret-redis-passw0rd"


def make_certificates(folder: Path) -> None:
    """A CA, and a server certificate for 127.0.0.1 that it signs."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    signing = "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1"
    openssl(*signing.split(), "-extfile", "san.ext", "-out", "server.crt")


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks only TLS and wants a password: its port and the CA file."""
    assert shutil.which("openssl"), "openssl is needed to make the test certificates"
    folder = tmp_path_factory.mktemp("tls-redis")
    make_certificates(folder)
    port = free_port()
    command = [
        "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
        "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no",
        "--requirepass", PASSWORD, "--save", "", "--dir", str(folder),
    ]  # fmt: skip
    with subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL) as server:
        try:
            yield port, folder / "ca.crt"
        finally:
            server.terminate()


def url(port: int, ca: Path, password: str = PASSWORD) -> str:
    return f"rediss://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={ca}"


async def imagedock(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "imagedock", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )


async def test_a_worker_runs_over_tls_with_a_password(tls_redis: tuple[int, Path]) -> None:
    """With only a `rediss://` URL, a worker starts and beats, and `check --worker` and `jobs`
    reach the same Redis; nothing prints the password."""
    port, ca = tls_redis
    env = worker_env(url(port, ca))
    before = await imagedock(env, "check", "--worker")
    assert before.returncode == 1, before.stdout + before.stderr  # Redis answers, no worker yet
    assert "no worker" in before.stdout
    with running([sys.executable, "-m", "imagedock", "worker"], env) as worker:
        for _ in range(100):
            seen = await imagedock(env, "check", "--worker")
            if seen.returncode == 0:
                break
            await asyncio.sleep(0.3)
        assert seen.returncode == 0, seen.stdout + seen.stderr
        listed = await imagedock(env, "jobs", "--json")
        assert listed.returncode == 0, listed.stderr
        worker.terminate()
        output, _ = worker.communicate(timeout=60)
    for text in (before.stdout, before.stderr, seen.stdout, seen.stderr, output):
        assert PASSWORD not in text


async def test_a_wrong_redis_password_is_refused_without_repeating_it(
    tls_redis: tuple[int, Path],
) -> None:
    """A wrong password: `check` names Redis as the part that failed, exits 1, and neither the
    wrong password nor the URL's secret part appears in what it prints."""
    port, ca = tls_redis
    wrong = "not-the-password-42"
    done = await imagedock(worker_env(url(port, ca, wrong)), "check")
    assert done.returncode == 1
    assert "Redis" in done.stdout
    assert wrong not in done.stdout + done.stderr
