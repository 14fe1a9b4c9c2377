"""`GET /metrics` for Prometheus and `GET /stats` for the dashboard: both render the figures
declared in `worker.metrics`, read from Redis in one round trip, so every process's work is
counted once and every receiver shows the same numbers."""

import math
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
from worker import metrics
from worker.apiframe.catalog import LONGEST_LASTING
from worker.ledger.waiting import Pace
from worker.metrics import Figures, Gauge, read_figures
from worker.runtime.heartbeat import alive
from worker.status import UNFINISHED, Status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Snapshot:
    """A one-shot collector over figures read just before rendering."""

    def __init__(
        self, figures: Figures, pace: Pace, job_deadline: float, credits_alert: int
    ) -> None:
        self.figures, self.pace = figures, pace
        self.job_deadline, self.credits_alert = job_deadline, credits_alert

    def collect(self) -> Iterable[Metric]:
        yield from self.counters()
        yield from self.histograms()
        yield from self.gauges()

    def counters(self) -> Iterable[Metric]:
        figures = self.figures
        for counter in metrics.COUNTERS:
            name = f"imagedock_{counter.name}"
            if counter.label is None:
                yield CounterMetricFamily(name, counter.help, figures.count(counter))
                continue
            family = CounterMetricFamily(name, counter.help, labels=[counter.label])
            for value, count in figures.labelled(counter).items():
                family.add_metric([value], count)
            if counter is metrics.WEBHOOKS_RECEIVED:
                family.add_metric(["rejected"], figures.total(metrics.WEBHOOKS_REJECTED))
            yield family

    def histograms(self) -> Iterable[Metric]:
        for histogram, raw in self.figures.histograms.items():
            buckets, total = metrics.cumulative(histogram, raw)
            yield HistogramMetricFamily(
                f"imagedock_{histogram.name}", histogram.help, buckets=buckets, sum_value=total
            )

    def gauges(self) -> Iterable[Metric]:
        figures, pace = self.figures, self.pace
        oldest = figures.oldest_unfinished
        beats = figures.heartbeats
        values: dict[Gauge, float | dict[str, float]] = {
            metrics.JOBS: {status.value: count for status, count in figures.by_status.items()},
            metrics.OLDEST_UNFINISHED: figures.read_at - oldest if oldest is not None else 0.0,
            metrics.JOB_DEADLINE: self.job_deadline,
            metrics.DEAD_LETTERS: figures.dead_letters,
            metrics.JOBS_POLLED: figures.polled,
            metrics.QUEUE_DEPTH: dict(figures.queues),
            metrics.LAST_HEARTBEAT: max(beats.values(), default=0.0),
            metrics.WORKERS_ALIVE: len(alive(beats, figures.read_at)),
            metrics.SUBMIT_WAITING: {caller: float(n) for caller, n in pace.waiting.items()},
            metrics.SUBMIT_IN_FLIGHT: pace.in_flight + pace.sending,
            metrics.SUBMIT_RATE: pace.rate,
            metrics.SUBMIT_PAUSED: pace.paused_for,
            metrics.CREDITS_AVAILABLE: math.nan if pace.credits is None else pace.credits,
            metrics.CREDITS_ALERT: self.credits_alert,
            metrics.CALLER_CREDITS_TODAY: pace.credits_today,
        }
        for gauge in metrics.GAUGES:
            value = values[gauge]
            name = f"imagedock_{gauge.name}"
            if isinstance(value, dict):
                family = GaugeMetricFamily(name, gauge.help, labels=[gauge.label or "label"])
                for label, each in value.items():
                    family.add_metric([label], each)
                yield family
            else:
                yield GaugeMetricFamily(name, gauge.help, value)


async def metrics_page(request: Request) -> Response:
    deps = deps_of(request)
    registry = CollectorRegistry(auto_describe=False)
    settings = deps.settings
    # A job may run to its route's job deadline and then take the landing deadline to land.
    running = settings.job_deadline * LONGEST_LASTING
    deadline = max(settings.submit_deadline, running + settings.landing_deadline)
    figures, pace = await read_figures(deps.redis), await deps.submit_queue.pace()
    registry.register(Snapshot(figures, pace, deadline, settings.credits_alert))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)


async def stats(request: Request) -> Response:
    """`GET /stats`: the dashboard's counters."""
    deps = deps_of(request)
    figures = await read_figures(deps.redis)
    pace = await deps.submit_queue.pace()
    answer = Stats(
        submitted=figures.count(metrics.JOBS_SUBMITTED),
        landed=figures.total(metrics.JOBS_LANDED),
        failed=figures.total(metrics.JOBS_FAILED),
        cancelled=figures.by_status[Status.CANCELLED],
        timed_out=figures.by_status[Status.TIMED_OUT],
        via_poll=figures.count(metrics.JOBS_LANDED_VIA_POLL),
        webhooks_rejected=figures.labelled(metrics.WEBHOOKS_REJECTED),
        dead_letters=figures.dead_letters,
        by_status=figures.by_status,
        unfinished=sum(figures.by_status[status] for status in UNFINISHED),
        credits_spent=figures.total(metrics.CREDITS_BY_MODEL),
        credits_by_caller=figures.labelled(metrics.CREDITS_BY_CALLER),
        credits_by_model=figures.labelled(metrics.CREDITS_BY_MODEL),
        waiting=sum(pace.waiting.values()),
        waiting_by_caller=pace.waiting,
        in_flight=pace.in_flight + pace.sending,
        submit_rate=round(pace.rate, 3),
        submit_pace=pace.summary(),
        credits_today=pace.credits_today,
    )
    return JSONResponse(answer.body())
