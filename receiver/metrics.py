"""`GET /metrics` for Prometheus and `GET /stats` for the dashboard: both render the same
figures, read from Redis in one round trip, so every process's work is counted once and every
receiver shows the same numbers."""

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.schemas import Stats
from receiver.state import deps_of
from worker.figures import Figures, read_figures
from worker.heartbeat import alive
from worker.ledger import REJECTED
from worker.measures import cumulative
from worker.status import UNFINISHED, Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTCOMES = ("accepted", "duplicate", "early", "unsigned")  # of webhooks taken; plus "rejected"


class Snapshot:
    """A one-shot collector over figures read just before rendering."""

    def __init__(self, figures: Figures, job_deadline: float) -> None:
        self.figures, self.job_deadline = figures, job_deadline

    def collect(self) -> Iterable[Metric]:
        yield from self.counters()
        yield from self.histograms()
        yield from self.gauges()

    def counters(self) -> Iterable[Metric]:
        figures = self.figures
        yield counter("jobs_submitted", "Jobs recorded.", figures.counter("submitted"))
        for outcome in ("landed", "failed"):
            family = CounterMetricFamily(
                f"imagedock_jobs_{outcome}", f"Jobs {outcome}, by model.", labels=["model"]
            )
            for model, count in figures.labelled(f"{outcome}:").items():
                family.add_metric([model], count)
            yield family
        yield counter(
            "jobs_landed_via_poll",
            "Jobs landed because the poller found them finished: their webhook never came.",
            figures.counter("landed_via_poll"),
        )
        yield counter(
            "webhooks_missed",
            "Jobs the poller found finished with no webhook.",
            figures.counter("webhook_missed"),
        )
        received = CounterMetricFamily(
            "imagedock_webhooks_received", "Webhooks, by outcome.", labels=["outcome"]
        )
        for outcome in OUTCOMES:
            received.add_metric([outcome], figures.counter(f"webhook:{outcome}"))
        received.add_metric(["rejected"], figures.total(REJECTED))
        yield received
        rejected = CounterMetricFamily(
            "imagedock_webhooks_rejected", "Webhooks refused, by reason.", labels=["reason"]
        )
        for reason, count in figures.labelled(REJECTED).items():
            rejected.add_metric([reason], count)
        yield rejected
        deliveries = CounterMetricFamily(
            "imagedock_event_deliveries", "Downstream event deliveries.", labels=["outcome"]
        )
        for outcome in ("delivered", "retried", "dead"):
            deliveries.add_metric([outcome], figures.counter(f"delivery:{outcome}"))
        yield deliveries

    def histograms(self) -> Iterable[Metric]:
        for histogram, raw in self.figures.histograms.items():
            buckets, total = cumulative(histogram, raw)
            yield HistogramMetricFamily(
                f"imagedock_{histogram.name}", histogram.help, buckets=buckets, sum_value=total
            )

    def gauges(self) -> Iterable[Metric]:
        figures = self.figures
        jobs = GaugeMetricFamily("imagedock_jobs", "Records by status.", labels=["status"])
        for status, count in figures.by_status.items():
            jobs.add_metric([status.value], count)
        yield jobs
        oldest = figures.oldest_unfinished
        age = figures.read_at - oldest if oldest is not None else 0.0
        yield gauge(
            "oldest_unfinished_job_age_seconds", "Age of the oldest job not yet final.", age
        )
        yield gauge(
            "job_deadline_seconds",
            "The age by which the poller ends every job, landed or not: older is stuck.",
            self.job_deadline,
        )
        yield gauge(
            "events_dead_letters", "Event deliveries that exhausted retries.", figures.dead_letters
        )
        yield gauge("jobs_polled", "Unfinished jobs the poller is watching.", figures.polled)
        depth = GaugeMetricFamily("imagedock_queue_depth", "arq jobs waiting.", labels=["queue"])
        for queue, count in figures.queues.items():
            depth.add_metric([queue], count)
        yield depth
        beats = figures.heartbeats
        yield gauge(
            "worker_last_heartbeat_timestamp_seconds",
            "When the most recent worker heartbeat was (Unix time; 0 if none).",
            max(beats.values(), default=0.0),
        )
        yield gauge(
            "workers_alive",
            "Workers whose heartbeat is fresh.",
            len(alive(beats, figures.read_at)),
        )


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"imagedock_{name}", documentation, value)


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"imagedock_{name}", documentation, value)


async def metrics(request: Request) -> Response:
    deps = deps_of(request)
    registry = CollectorRegistry(auto_describe=False)
    settings = deps.settings
    # A job may run to the job deadline and then take the landing deadline to land.
    deadline = max(settings.submit_deadline, settings.job_deadline + settings.landing_deadline)
    registry.register(Snapshot(await read_figures(deps.redis), deadline))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)


async def stats(request: Request) -> Response:
    """`GET /stats`: the dashboard's counters."""
    figures = await read_figures(deps_of(request).redis)
    answer = Stats(
        submitted=figures.counter("submitted"),
        landed=figures.total("landed:"),
        failed=figures.total("failed:"),
        cancelled=figures.by_status[Status.CANCELLED],
        timed_out=figures.by_status[Status.TIMED_OUT],
        via_poll=figures.counter("landed_via_poll"),
        webhooks_rejected=figures.labelled(REJECTED),
        dead_letters=figures.dead_letters,
        by_status=figures.by_status,
        unfinished=sum(figures.by_status[status] for status in UNFINISHED),
    )
    return JSONResponse(answer.body())
