"""One job, one trace: from a caller's `POST /jobs` through the receiver and worker processes to
the delivery of `job.landed`, exported over OTLP to a collector the test runs."""

import asyncio
import subprocess
import sys

import httpx
import pytest

from imagedock.tracing import exporters_asked
from simulator.local_s3 import LocalS3, free_port
from simulator.serving import serving
from tests.support import ROOT
from tests.support.otlp import Collector, tree
from tests.support.processes import env_of
from tests.support.stack import API_TOKEN, Sink, stack_on
from tests.support.waiting import eventually

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
# Each process's part of the job's trace, by the service that exports it.
EXPECTED = {
    ("imagedock-receiver", "POST /jobs"),
    ("imagedock-worker", "apiframe.submit"),
    ("imagedock-receiver", "webhook.intake"),
    ("imagedock-worker", "job.land"),
    ("imagedock-worker", "file.download"),
    ("imagedock-worker", "s3.put"),
    ("imagedock-worker", "event.deliver"),
}


async def test_a_job_is_one_trace_across_the_processes(
    redis_url: str, s3_server: LocalS3, sink: Sink
) -> None:
    collector = Collector()
    async with (
        serving(collector.app()) as collector_url,
        stack_on(redis_url, s3_server, sink, dispatching=False) as stack,
    ):
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector_url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        receiver_env = env_of(
            stack, IMAGEDOCK_PUBLIC_URL=public, IMAGEDOCK_API_TOKEN=API_TOKEN, **otel
        )
        worker_env = {**stack.worker_env(public_url=public), **otel}
        with (
            started(
                [sys.executable, "-m", "imagedock", "receiver", "--port", str(port)], receiver_env
            ),
            started([sys.executable, "-m", "imagedock", "worker"], worker_env),
        ):
            ref = await submit_traced(public)

            async def delivered() -> bool:
                return bool(stack.delivered("job.landed"))

            async def exported() -> bool:
                return {(s.service, s.name) for s in collector.of_trace(CALLER_TRACE)} >= EXPECTED

            await eventually(delivered, "the job.landed delivery", deadline=30)
            await eventually(exported, "the spans", deadline=30)

    spans = collector.of_trace(CALLER_TRACE)
    print(tree(spans))  # shown with -s, and beside a failure
    [root] = [span for span in spans if span.name == "POST /jobs"]
    assert root.parent_id == CALLER_SPAN  # the caller's own trace, continued
    assert {s.attributes.get("imagedock.ref") for s in spans if s.name == "apiframe.submit"} == {
        ref
    }
    # The webhook's own request is a trace of Apiframe's making: its intake span, in the job's
    # trace, links to it.
    [intake] = [span for span in spans if span.name == "webhook.intake"]
    assert len(intake.links) == 1
    assert intake.links[0] != CALLER_TRACE
    assert len([span for span in spans if span.name == "s3.put"]) == 2  # the image, the manifest
    assert stack.delivered("job.landed")[0]["data"]["ref"] == ref


async def submit_traced(base_url: str) -> str:
    """`POST /jobs` carrying a caller's `traceparent`; the job's ref."""
    headers = {
        "Authorization": f"Bearer {API_TOKEN}",
        "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
    }
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as api:
        for _ in range(200):  # until the receiver process answers
            try:
                answer = await api.post("/jobs", json={"prompt": "a traced kite"})
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["ref"])


class started:
    """A process for the block's length, stopped (SIGTERM, so its spans are flushed) after."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def __enter__(self) -> subprocess.Popen[bytes]:
        return self.process

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_nothing_is_exported_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OpenTelemetry variable, or `none`: no exporter; an endpoint alone: OTLP."""
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert exporters_asked() == []
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert exporters_asked() == ["otlp"]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert exporters_asked() == []
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    assert exporters_asked() == ["console", "otlp"]
