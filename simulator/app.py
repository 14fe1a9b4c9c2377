"""A Starlette app that behaves like Apiframe's v2 image API: its routes, bodies, errors, job
lifecycle, signed webhooks and CDN, with every fault switchable."""

import asyncio
import base64
import hashlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.cdn import serve_file
from simulator.config import Fault, SimulatorConfig
from simulator.images import EXTENSIONS, PaddedImage, render
from simulator.responses import error, fault_response
from simulator.state import Delivery, Received, SimJob, iso
from simulator.validation import BodyError, validate_submission
from simulator.webhooks import WebhookSender
from worker.apiframe.models import IDEMPOTENCY_WINDOW

Handler = Callable[[Request], Awaitable[Response]]


class Simulator:
    """A simulated Apiframe: serve `simulator.app`, steer it through `config`, read its records."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.jobs: dict[str, SimJob] = {}
        self.received: list[Received] = []
        self.deliveries: list[Delivery] = []
        self.cdn_requests: Counter[str] = Counter()
        self._idempotency: dict[str, tuple[str, str, float]] = {}
        self._rng = random.Random(self.config.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sender: WebhookSender | None = None
        self.app = Starlette(
            routes=[
                Route("/v2/images/generate", self._recorded(self.generate), methods=["POST"]),
                Route("/v2/jobs/{job_id}", self._recorded(self.get_job), methods=["GET"]),
                Route("/v2/jobs", self._recorded(self.list_jobs), methods=["GET"]),
                Route("/v2/me", self._recorded(self.me), methods=["GET"]),
                Route("/cdn/images/{name}", self.cdn_image, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

    # The Python API tests use.

    def fail_next(
        self, status: int, times: int = 1, *, path: str = "/v2/", retry_after: str = "1"
    ) -> None:
        """Answer the next `times` requests under `path` with `status`."""
        self.config.faults.append(Fault(status, times, path, retry_after))

    def image(self, url: str) -> PaddedImage:
        name = url.rsplit("/", 1)[-1]
        return self.jobs[job_id_of(name)].images[name]

    def deliveries_for(self, job_id: str, event: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries if d.job_id == job_id and event in (None, d.event)]

    def submissions(self) -> list[Received]:
        return [r for r in self.received if r.path == "/v2/images/generate"]

    async def settle(self) -> None:
        """Wait until every job and delivery in flight has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # Plumbing.

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as http:
            self._sender = WebhookSender(
                lambda: self.config, http, self._rng, self.deliveries.append
            )
            yield
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _recorded(self, handler: Handler) -> Handler:
        async def recorded(request: Request) -> Response:
            # Recorded on arrival, so a request whose client gave up is still seen.
            record = Received(
                request.method, request.url.path, dict(request.headers), await request.body()
            )
            self.received.append(record)
            if self.config.response_delay_seconds:
                await asyncio.sleep(self.config.response_delay_seconds)
            response = self._injected_fault(request) or await handler(request)
            response.headers.setdefault("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
            record.status = response.status_code
            return response

        return recorded

    def _injected_fault(self, request: Request) -> Response | None:
        for fault in self.config.faults:
            if fault.times > 0 and request.url.path.startswith(fault.path):
                fault.times -= 1
                return fault_response(fault)
        return None

    def _authenticate(self, request: Request) -> tuple[str | None, Response | None]:
        key = request.headers.get("x-api-key")
        if not key:
            return None, error(401, "Missing API key: send it in the X-API-Key header")
        if key in self.config.inactive_keys:
            return None, error(403, "API key is inactive")
        known = key in self.config.api_keys if self.config.api_keys else key.startswith("afk_")
        if not known:
            return None, error(401, "Invalid API key")
        return key, None

    # The v2 routes.

    async def generate(self, request: Request) -> Response:
        key, refusal = self._authenticate(request)
        if refusal or key is None:
            return refusal or error(401, "Invalid API key")
        try:
            body = json.loads(await request.body())
            accepted = validate_submission(body, self.config)
        except ValueError:
            return error(400, "Invalid JSON body", details={"": ["Malformed JSON"]})
        except BodyError as exc:
            return error(400, exc.error, details=exc.details)
        idem_key = request.headers.get("idempotency-key")
        if idem_key is not None:
            replayed = self._replay(idem_key, accepted)
            if replayed is not None:
                return replayed
        if self.config.credits < self.config.credit_cost:
            return error(
                402,
                "Insufficient credits",
                creditsRequired=self.config.credit_cost,
                creditsAvailable=self.config.credits,
            )
        job = self._create(key, accepted, str(request.base_url).rstrip("/"))
        if idem_key is not None:
            self._idempotency[idem_key] = (fingerprint(accepted), job.id, time.time())
        if self.config.early:
            # The terminal webhook reaches the receiver before this 202 does.
            await self._run(job, instant=True)
        else:
            self._spawn(self._run(job))
        return JSONResponse({"jobId": job.id, "status": "QUEUED"}, status_code=202)

    def _replay(self, idem_key: str, body: dict[str, Any]) -> Response | None:
        if not 1 <= len(idem_key) <= 255:
            return error(400, "Idempotency-Key must be 1 to 255 characters")
        seen = self._idempotency.get(idem_key)
        if seen is None or time.time() - seen[2] > IDEMPOTENCY_WINDOW:
            return None
        if seen[0] != fingerprint(body):
            return error(409, "Idempotency-Key was already used with a different request body")
        job = self.jobs[seen[1]]
        return JSONResponse({"jobId": job.id, "status": job.status}, status_code=202)

    def _create(self, key: str, body: dict[str, Any], base_url: str) -> SimJob:
        self.config.credits -= self.config.credit_cost
        job = SimJob(
            id=str(uuid.uuid4()),
            api_key=key,
            prompt=body["prompt"],
            model=body.get("model", "grok-imagine-image"),
            params=body.get(self.config.params_field, {}),
            webhook_url=body.get(self.config.webhook_field),
            webhook_events=tuple(body.get("webhookEvents", ("progress", "completed", "failed"))),
            credit_cost=self.config.credit_cost,
            cdn_base=self.config.result_base_url or base_url,
        )
        self.jobs[job.id] = job
        return job

    async def get_job(self, request: Request) -> Response:
        _, refusal = self._authenticate(request)
        if refusal:
            return refusal
        job_id = request.path_params["job_id"]
        try:
            uuid.UUID(job_id)
        except ValueError:
            return error(400, "Invalid job id", details={"id": ["Invalid uuid"]})
        job = self.jobs.get(job_id)
        if job is None:
            return error(404, "Job not found")
        return JSONResponse(self._job_json(job))

    async def list_jobs(self, request: Request) -> Response:
        _, refusal = self._authenticate(request)
        if refusal:
            return refusal
        query = request.query_params
        try:
            limit = int(query.get("limit", "20"))
            offset = int(base64.urlsafe_b64decode(query["cursor"])) if "cursor" in query else 0
        except ValueError:
            return error(400, "Invalid query", details={"limit": ["Integer from 1 to 100"]})
        if not 1 <= limit <= 100:
            return error(400, "Invalid query", details={"limit": ["Integer from 1 to 100"]})
        jobs = sorted(self.jobs.values(), key=lambda job: job.created_at, reverse=True)
        jobs = [
            job
            for job in jobs
            if query.get("status") in (None, job.status) and query.get("model") in (None, job.model)
        ]
        page = jobs[offset : offset + limit]
        more = offset + limit < len(jobs)
        cursor = base64.urlsafe_b64encode(str(offset + limit).encode()).decode() if more else None
        return JSONResponse(
            {"jobs": [self._job_json(job) for job in page], "nextCursor": cursor, "hasMore": more}
        )

    async def me(self, request: Request) -> Response:
        key, refusal = self._authenticate(request)
        if refusal or key is None:
            return refusal or error(401, "Invalid API key")
        user = hashlib.sha256(key.encode()).hexdigest()[:12]
        return JSONResponse(
            {
                "user": {"id": f"usr_{user}", "email": f"{user}@example.com"},
                "team": {
                    "id": "team_sim",
                    "name": "Simulated team",
                    "credits": self.config.credits,
                },
            }
        )

    def _job_json(self, job: SimJob) -> dict[str, Any]:
        return job.as_json(self.config.job_result_shape, self.config.file_ttl_seconds)

    # The lifecycle: QUEUED, PROCESSING with rising progress, then COMPLETED or FAILED.

    async def _run(self, job: SimJob, *, instant: bool = False) -> None:
        config = self.config
        if not instant:
            await asyncio.sleep(config.queued_seconds)
        job.status, job.progress = "PROCESSING", 0
        if config.stall:
            return
        steps = max(1, config.progress_steps)
        stale: dict[str, Any] | None = None
        for step in range(1, steps + 1):
            if not instant:
                await asyncio.sleep(config.processing_seconds / steps)
            job.progress = step * 100 // (steps + 1)
            event = {
                "event": "progress",
                "jobId": job.id,
                "status": "PROCESSING",
                "progress": job.progress,
                "model": job.model,
            }
            if config.reorder:
                stale = event
            elif "progress" in job.webhook_events:
                await self._deliver(job, "progress", event)
        terminal = self._finish(job)
        if terminal["event"] in job.webhook_events:
            await self._deliver(job, terminal["event"], terminal)
        if stale is not None:
            # A misbehaving sender: the stale event goes out whatever was subscribed.
            await self._deliver(job, "progress", stale)

    def _finish(self, job: SimJob) -> dict[str, Any]:
        config = self.config
        job.completed_at = time.time()
        if self._rng.random() < config.failure_rate:
            job.status, job.error = "FAILED", config.failure_message
            config.credits += job.credit_cost  # refunded in full
            return {
                "event": "failed",
                "jobId": job.id,
                "status": "FAILED",
                "error": job.error,
                "model": job.model,
            }
        aspect_ratio = str(job.params.get("aspect_ratio", "1:1"))
        for index in range(1, max(1, min(4, config.images_per_job)) + 1):
            name = f"{job.id}-{index}.{EXTENSIONS[config.image_format]}"
            picture = render(
                job.prompt, index, aspect_ratio, config.image_format, config.image_long_side
            )
            job.images[name] = PaddedImage.sized(
                picture, config.image_format, config.image_bytes, salt=name
            )
            job.image_urls.append(f"{job.cdn_base}/cdn/images/{name}")
        job.status, job.progress = "COMPLETED", 100
        return {
            "event": "completed",
            "jobId": job.id,
            "status": "COMPLETED",
            "progress": 100,
            "result": job.result(config.webhook_result_shape),
            "model": job.model,
            "creditCost": job.credit_cost,
            "completedAt": iso(job.completed_at),
        }

    async def _deliver(self, job: SimJob, event: str, payload: dict[str, Any]) -> None:
        assert self._sender is not None, "the simulator is not being served"
        await self._sender.deliver(job, event, payload)

    # The CDN.

    async def cdn_image(self, request: Request) -> Response:
        name = request.path_params["name"]
        job = self.jobs.get(job_id_of(name))
        picture = job.images.get(name) if job else None
        if job is None or picture is None:
            return error(404, "Not found")
        if job.expired(self.config.file_ttl_seconds):
            return error(404, "File expired")
        self.cdn_requests[name] += 1
        return serve_file(picture, self.config, self.cdn_requests[name])


def job_id_of(file_name: str) -> str:
    return file_name.rsplit("-", 1)[0]


def fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
