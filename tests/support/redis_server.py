"""A redis-server of a test's own, for faults the shared Redis must not suffer: stopped and
started again on the same port and append-only file."""

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from simulator.local_s3 import free_port
from tests.support.waiting import wait_for


@dataclass
class PrivateRedis:
    """A redis-server of the test's own, persisting every write to its append-only file, that
    can be stopped and started again on the same port and directory."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        command += ["--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(command)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def answers() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.log()
            try:
                return bool(client.ping())
            except redis.exceptions.RedisError:
                return False

        try:
            wait_for(answers, "redis-server to answer", deadline=30.0)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it, and wait for it to exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0, self.log()
        self.process = None

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text() if path.exists() else ""
