"""`GET /metrics` for Prometheus: counters kept in Redis, so every process's work is counted
once, whichever receiver is scraped."""

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from receiver.rejections import COUNTER_PREFIX
from receiver.state import deps_of
from worker.events import DEAD_LETTERS
from worker.ledger import POLL_SET

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Snapshot:
    """A one-shot collector over values read just before rendering."""

    def __init__(self, stats: dict[str, int], dead: int, polled: int) -> None:
        self.stats, self.dead, self.polled = stats, dead, polled

    def collect(self) -> Iterable[Metric]:
        missed, dead, polled = self.stats.get("webhook_missed", 0), self.dead, self.polled
        yield CounterMetricFamily(
            "imagedock_webhooks_missed", "Jobs the poller found finished with no webhook.", missed
        )
        rejected = CounterMetricFamily(
            "imagedock_webhooks_rejected", "Webhooks refused, by reason.", labels=["reason"]
        )
        for name, count in sorted(self.stats.items()):
            if name.startswith(COUNTER_PREFIX):
                rejected.add_metric([name.removeprefix(COUNTER_PREFIX)], count)
        yield rejected
        for outcome in ("landed", "failed"):
            family = CounterMetricFamily(
                f"imagedock_jobs_{outcome}", f"Jobs {outcome}, by model.", labels=["model"]
            )
            for name, count in sorted(self.stats.items()):
                if name.startswith(f"{outcome}:"):
                    family.add_metric([name.split(":", 1)[1]], count)
            yield family
        yield GaugeMetricFamily(
            "imagedock_events_dead_letters", "Event deliveries that exhausted retries.", dead
        )
        yield GaugeMetricFamily(
            "imagedock_jobs_polled", "Unfinished jobs the poller is watching.", polled
        )


async def metrics(request: Request) -> Response:
    ledger = deps_of(request).ledger
    stats = await ledger.stats()
    dead = await ledger.redis.llen(DEAD_LETTERS)  # type: ignore[misc]
    polled = await ledger.redis.zcard(POLL_SET)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(stats, dead, polled))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
