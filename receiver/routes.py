"""Every route of the receiver, listed once: one `Operation` per (method, path), in the order
Starlette tries them. `app.py` builds the app's routes from this table, `openapi.py` the OpenAPI
document, and `auth.py` the paths served without the bearer token, so the three cannot disagree."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from receiver import batch, bulk, dashboard, jobs, operations, schemas
from receiver.batch import BatchRequest
from receiver.jobs import JobRequest
from receiver.metrics import metrics_page, stats
from receiver.openapi import openapi
from receiver.probes import healthz, readyz
from receiver.webhooks import apiframe_webhook
from worker.apiframe import WebhookEvent

Endpoint = Callable[[Request], Awaitable[Response]]
Answer = type[BaseModel] | str  # a model for JSON, or the media type of another answer
# A path served by static files ends so; the files are mounted at the path before it.
FILES = "/{path}"


@dataclass(frozen=True)
class Operation:
    """One method on one path: the handler that serves it (every operation on a path shares
    one) and what the OpenAPI document says of it."""

    method: str
    path: str
    handler: Endpoint | StaticFiles
    summary: str
    answers: Mapping[int, Answer]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    token: bool = True  # needs `Authorization: Bearer <IMAGEDOCK_API_TOKEN>`
    tag: str = "jobs"
    refusals: tuple[int, ...] = field(default=(400,))


OPERATIONS = (
    # Routes are tried in order: Apiframe's callbacks, the busiest, first.
    Operation("POST", "/webhooks/apiframe", apiframe_webhook, "Apiframe's webhook callbacks",
              {200: schemas.WebhookAnswer, 202: schemas.WebhookAnswer}, body=WebhookEvent,
              token=False, tag="webhooks", refusals=(400, 401, 404, 408, 409, 413, 415, 503)),
    Operation("POST", "/jobs", jobs.jobs, "Accept a job, to be submitted to Apiframe at its pace",
              {202: schemas.JobAccepted}, body=JobRequest, refusals=(400, 409, 413, 503)),
    Operation("GET", "/jobs", jobs.jobs, "List jobs, newest first, a page at a time",
              {200: schemas.JobPage}, query=schemas.JobsQuery, refusals=(400, 429)),
    # Before `/jobs/{job_id}`, so that another method on them is refused with `Allow: POST`.
    Operation("POST", "/jobs/batch", batch.create_batch,
              "Accept up to 1,000 jobs, each on its own", {202: schemas.BatchAccepted},
              body=BatchRequest, refusals=(400, 413, 503)),
    Operation("POST", "/jobs/track", operations.track, "Track a job submitted elsewhere",
              {200: schemas.TrackAccepted, 202: schemas.TrackAccepted},
              body=schemas.TrackRequest, tag="operations",
              refusals=(400, 404, 409, 413, 429, 502, 503)),
    Operation("POST", "/jobs/replay", bulk.start,
              "Replay or resubmit every job a filter selects, in the background",
              {200: schemas.BulkReplayView, 202: schemas.BulkReplayView},
              body=schemas.BulkReplayRequest, tag="operations", refusals=(400, 409, 413)),
    Operation("GET", "/jobs/replay/{bulk_id}", bulk.progress, "A bulk replay's progress",
              {200: schemas.BulkReplayView}, tag="operations", refusals=(404,)),
    Operation("GET", "/jobs/{job_id}", jobs.job, "One job, by Apiframe job id or imagedock ref",
              {200: schemas.JobView}, query=schemas.JobQuery, refusals=(400, 404)),
    Operation("DELETE", "/jobs/{job_id}", jobs.job,
              "Cancel a job still waiting to be submitted (Apiframe has no cancel)",
              {200: schemas.JobView}, refusals=(404, 409)),
    Operation("GET", "/jobs/{job_id}/log", jobs.job_log, "One job's timeline",
              {200: schemas.LogPage}, refusals=(404,)),
    Operation("POST", "/jobs/{job_id}/replay", operations.replay,
              "Land a job again and send its events again", {202: schemas.ReplayQueued},
              tag="operations", refusals=(404, 429)),
    Operation("GET", "/log", jobs.global_log,
              "The job log of every job; ask for text/event-stream to follow it",
              {200: schemas.LogPage}, query=schemas.LogQuery, tag="log"),
    Operation("GET", "/events/dead", operations.dead_letters,
              "Dead-lettered downstream events, newest first", {200: schemas.DeadLetters},
              query=schemas.DeadLetterQuery, tag="operations"),
    Operation("POST", "/events/redrive", operations.redrive,
              "Deliver every dead-lettered event again", {202: schemas.Redriven},
              tag="operations", refusals=()),
    Operation("GET", "/stats", stats, "The dashboard's counters", {200: schemas.Stats},
              tag="operations", refusals=()),
    # Probes and scrapers should not need the token, and the dashboard's page and assets hold
    # no data (the page asks for the token itself).
    Operation("GET", "/healthz", healthz, "The process is up", {200: schemas.Health},
              token=False, tag="operations", refusals=()),
    Operation("GET", "/readyz", readyz, "Ready for traffic: Redis answers",
              {200: schemas.Health}, token=False, tag="operations", refusals=(503,)),
    Operation("GET", "/metrics", metrics_page, "Prometheus metrics", {200: "text/plain"},
              token=False, tag="operations", refusals=()),
    Operation("GET", "/openapi.json", openapi, "This document", {200: "application/json"},
              token=False, tag="operations", refusals=()),
    Operation("GET", "/", dashboard.page, "The dashboard", {200: "text/html"}, token=False,
              tag="dashboard", refusals=()),
    Operation("GET", "/static" + FILES, dashboard.ASSETS, "The dashboard's scripts and styles",
              {200: "text/plain"}, token=False, tag="dashboard", refusals=(404,)),
)  # fmt: skip
