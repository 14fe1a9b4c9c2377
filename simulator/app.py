"""A Starlette app that behaves like Apiframe's v2 image API: its routes, bodies, errors, job
lifecycle, signed webhooks and CDN, with every fault switchable."""

import asyncio
import base64
import hashlib
import json
import random
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.account import account, list_problems
from simulator.cdn import serve_file
from simulator.config import Fault, SimulatorConfig
from simulator.images import EXTENSIONS, PaddedImage, render
from simulator.limits import SubmitLimits
from simulator.media import MediaFile, MediaFormat
from simulator.responses import error, fault_response
from simulator.state import Delivery, Received, SimJob, iso
from simulator.validation import (
    BodyError,
    images_asked,
    params_key_for,
    validate_route,
    validate_submission,
)
from simulator.webhooks import WebhookSender
from worker.apiframe.catalog import (
    GENERATE,
    MIDJOURNEY_GRID_MAKERS,
    MODELS,
    OPERATIONS,
    action_refused,
)
from worker.apiframe.models import IDEMPOTENCY_WINDOW

Handler = Callable[[Request], Awaitable[Response]]
KNOBS = frozenset(knob.name for knob in fields(SimulatorConfig))
UNFINISHED = frozenset({"QUEUED", "PROCESSING"})


class Simulator:
    """A simulated Apiframe: serve `simulator.app`, steer it through `config`, read its records."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.jobs: dict[str, SimJob] = {}
        self.received: list[Received] = []
        self.deliveries: list[Delivery] = []
        self.cdn_requests: Counter[str] = Counter()
        # (API key, Idempotency-Key) -> (body fingerprint, job id or '' for a refused body, when)
        self._idempotency: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._plans: list[dict[str, Any]] = []  # knobs for the next jobs created, in order
        self.limits = SubmitLimits()
        self._job_configs: dict[str, SimulatorConfig] = {}  # job id -> its own knobs
        self._rng = random.Random(self.config.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sender: WebhookSender | None = None
        self.app = Starlette(
            routes=[
                *(
                    Route(f"/v2/{path}", self._recorded(self.generate), methods=["POST"])
                    for path in OPERATIONS
                ),
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

    def plan_next_job(self, **knobs: Any) -> None:
        """Run the next job created with these knobs changed, for its whole life (its outcome,
        its webhooks, its CDN files), whatever the config says for other jobs. Knobs read at
        delivery or download time cannot otherwise single out one job among several in flight."""
        unknown = set(knobs) - KNOBS
        if unknown:
            raise TypeError(f"no such simulator knob: {', '.join(sorted(unknown))}")
        self._plans.append(knobs)

    def config_for(self, job: SimJob) -> SimulatorConfig:
        """The knobs `job` runs with: its plan's, or else the live config."""
        return self._job_configs.get(job.id, self.config)

    def image(self, url: str) -> PaddedImage | MediaFile:
        name = url.rsplit("/", 1)[-1]
        return self.jobs[job_id_of(name)].images[name]

    def deliveries_for(self, job_id: str, event: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries if d.job_id == job_id and event in (None, d.event)]

    def in_flight(self, key: str) -> int:
        """The key's jobs not yet finished."""
        return sum(
            1 for job in self.jobs.values() if job.api_key == key and job.status in UNFINISHED
        )

    def submissions(self) -> list[Received]:
        return [r for r in self.received if r.path.removeprefix("/v2/") in OPERATIONS]

    async def settle(self) -> None:
        """Wait until every job and delivery in flight has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # Plumbing.

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as http:
            self._sender = WebhookSender(self.config_for, http, self._rng, self.deliveries.append)
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
        """Any of the ten job routes: the route is the path after `/v2/`."""
        operation = request.url.path.removeprefix("/v2/")
        key, refusal = self._authenticate(request)
        if refusal or key is None:
            return refusal or error(401, "Invalid API key")
        idem_key = request.headers.get("idempotency-key")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return error(400, "Invalid JSON body", details={"": ["Malformed JSON"]})
        if idem_key is not None:
            replayed = self._replay((key, idem_key), body)
            if replayed is not None:
                return replayed
        try:
            if operation == GENERATE:
                accepted = validate_submission(body, self.config)
            else:
                accepted = validate_route(operation, body, self.config)
                parent_refusal = self._parent_refusal(key, operation, accepted)
                if parent_refusal is not None:
                    return parent_refusal
        except BodyError as exc:
            if idem_key is not None and self.config.bind_key_on_400:
                self._idempotency[(key, idem_key)] = (fingerprint(body), "", time.time())
            return error(400, exc.error, details=exc.details)
        most = self.config.max_in_flight
        in_flight = self.in_flight(key) if most is not None else 0
        wait = self.limits.refusal(key, self.config.submit_rate, in_flight, most)
        if wait is not None:
            return error(429, "Rate limit exceeded", headers={"Retry-After": f"{wait:g}"})
        if self.config.credits < self.config.credit_cost:
            return error(
                402,
                "Insufficient credits",
                creditsRequired=self.config.credit_cost,
                creditsAvailable=self.config.credits,
            )
        job = self._create(key, operation, accepted, str(request.base_url).rstrip("/"))
        if idem_key is not None:
            self._idempotency[(key, idem_key)] = (fingerprint(accepted), job.id, time.time())
        if self.config_for(job).early:
            # The terminal webhook reaches the receiver before this 202 does.
            await self._run(job, instant=True)
        else:
            self._spawn(self._run(job))
        return JSONResponse({"jobId": job.id, "status": "QUEUED"}, status_code=202)

    def _replay(self, scoped: tuple[str, str], body: Any) -> Response | None:
        """The answer an Idempotency-Key (scoped to the API key) already had, if any."""
        if not 1 <= len(scoped[1]) <= 255:
            return error(400, "Idempotency-Key must be 1 to 255 characters")
        seen = self._idempotency.get(scoped)
        if seen is None or time.time() - seen[2] > IDEMPOTENCY_WINDOW:
            return None
        if seen[0] != fingerprint(body):
            return error(409, "Idempotency-Key was already used with a different request body")
        if not seen[1]:
            return None  # the same refused body: validated again, refused again
        job = self.jobs[seen[1]]
        return JSONResponse({"jobId": job.id, "status": job.status}, status_code=202)

    def _parent_refusal(self, key: str, operation: str, body: dict[str, Any]) -> Response | None:
        """An action's parent: 404 unless it is the caller's, 409 unless the action is
        available for it (a finished job of the right route and kind)."""
        if not OPERATIONS[operation].acts_on_parent:
            return None
        parent = self.jobs.get(str(body["parentJobId"]))
        if parent is None or parent.api_key != key:
            return error(404, "Parent job not found, or owned by a different user")
        refused = action_refused(operation, str(body["action"]), parent.model, parent.action)
        if parent.status != "COMPLETED" or refused is not None:
            return error(409, f"Action {body['action']} is not available for this job")
        return None

    def _create(self, key: str, operation: str, body: dict[str, Any], base_url: str) -> SimJob:
        self.config.credits -= self.config.credit_cost
        parent = self.jobs.get(str(body.get("parentJobId")))
        model = body.get("model", parent.model if parent else "")
        known = OPERATIONS[operation].models.get(model)
        if operation == GENERATE:
            params = body.get(params_key_for(model, self.config), {})
        elif known is not None:
            params = body.get(known.params_key, {})
        else:  # an action: its own fields
            params = {k: v for k, v in body.items() if k not in ("action", "parentJobId")}
        job = SimJob(
            id=str(uuid.uuid4()),
            api_key=key,
            prompt=body.get("prompt", ""),
            model=model,
            params=params,
            operation=operation,
            action=body.get("action"),
            parent_id=parent.id if parent else None,
            webhook_url=body.get(self.config.webhook_field),
            webhook_events=tuple(body.get("webhookEvents", ("progress", "completed", "failed"))),
            credit_cost=self.config.credit_cost,
            cdn_base=self.config.result_base_url or base_url,
        )
        self.jobs[job.id] = job
        if self._plans:
            # Credits and injected faults stay the simulator's own: the copy shares the list.
            self._job_configs[job.id] = replace(self.config, **self._plans.pop(0))
        return job

    async def get_job(self, request: Request) -> Response:
        key, refusal = self._authenticate(request)
        if refusal:
            return refusal
        job_id = request.path_params["job_id"]
        try:
            uuid.UUID(job_id)
        except ValueError:
            return error(400, "Invalid job id", details={"id": ["Invalid uuid"]})
        job = self.jobs.get(job_id)
        if job is None or job.api_key != key:
            return error(404, "Job not found, or owned by a different user")
        return JSONResponse(self._job_json(job))

    async def list_jobs(self, request: Request) -> Response:
        key, refusal = self._authenticate(request)
        if refusal or key is None:
            return refusal or error(401, "Invalid API key")
        query = request.query_params
        details = list_problems(query)
        try:
            offset = int(base64.urlsafe_b64decode(query["cursor"])) if "cursor" in query else 0
        except ValueError:
            details["cursor"] = ["Invalid cursor"]
        if details:
            return error(400, "Invalid query", details=details)
        team = query.get("scope") == "team"
        if team and key not in self.config.team_admin_keys:
            return error(403, "Only a team admin may list the team's jobs")
        jobs = sorted(self.jobs.values(), key=lambda job: (job.created_at, job.id), reverse=True)
        wanted = {
            "status": query.get("status"),
            "model": query.get("model"),
            "id": query.get("search"),
        }
        jobs = [
            job
            for job in jobs
            if (team or job.api_key == key)
            and all(value in (None, getattr(job, name)) for name, value in wanted.items())
        ]
        limit = int(query.get("limit", "20"))
        page, more = jobs[offset : offset + limit], offset + limit < len(jobs)
        cursor = base64.urlsafe_b64encode(str(offset + limit).encode()).decode() if more else None
        answer: dict[str, Any] = {
            "jobs": [self._job_json(job) for job in page],
            "nextCursor": cursor,
            "hasMore": more,
        }
        if query.get("include_models") in ("true", "1"):
            answer["models"] = sorted({job.model for job in jobs})
        return JSONResponse(answer)

    async def me(self, request: Request) -> Response:
        key, refusal = self._authenticate(request)
        if refusal or key is None:
            return refusal or error(401, "Invalid API key")
        return JSONResponse(account(key, self.config.credits))

    def _job_json(self, job: SimJob) -> dict[str, Any]:
        config = self.config_for(job)
        return job.as_json(config.job_result_shape, config.file_ttl_seconds)

    # The lifecycle: QUEUED, PROCESSING with rising progress, then COMPLETED or FAILED.

    async def _run(self, job: SimJob, *, instant: bool = False) -> None:
        config = self.config_for(job)
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
        config = self.config_for(job)
        job.completed_at = time.time()
        draw = self._rng.random()
        if draw < config.failure_rate + config.cancel_rate:
            cancelled = draw >= config.failure_rate
            job.status = "CANCELLED" if cancelled else "FAILED"
            job.error = "The job was cancelled." if cancelled else config.failure_message
            job.progress = 0
            self.config.credits += job.credit_cost  # refunded in full
            job.credit_cost = 0
            return {
                "event": "failed",
                "jobId": job.id,
                "status": job.status,
                "error": job.error,
                "model": job.model,
            }
        self._make_results(job, config)
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

    def _make_results(self, job: SimJob, config: SimulatorConfig) -> None:
        """The job's files, and its result in its route's shape."""
        makes = OPERATIONS[job.operation].makes
        if makes == "video" and config.wrong_kind:
            job.outputs = {"videoUrl": self._image(job, "1", config)}
        elif makes == "video":
            job.outputs = {"videoUrl": self._media(job, "mp4", 1, config.video_bytes)}
        elif makes == "music" and job.action == "stems":
            stems = [self._media(job, "wav", n, config.audio_bytes) for n in (1, 2)]
            job.outputs = {"stems": [{"url": url} for url in stems]}
        elif makes == "music":
            most = OPERATIONS[job.operation].most(job.model)
            job.outputs = {"tracks": [self._track(job, n, config) for n in range(1, most + 1)]}
        else:
            one = job.operation != GENERATE and job.action not in MIDJOURNEY_GRID_MAKERS
            grid = job.model == "midjourney" and not one
            count = 1 if one else 4 if grid else images_asked(job.params) or config.images_per_job
            most = MODELS[job.model].max_images if job.model in MODELS else 4
            for index in range(1, max(1, min(most, count)) + 1):
                job.image_urls.append(self._image(job, str(index), config))
            if grid:
                job.outputs = {"images": list(job.image_urls),
                               "gridUrl": self._image(job, "grid", config)}  # fmt: skip

    def _image(self, job: SimJob, tag: str, config: SimulatorConfig) -> str:
        aspect_ratio = str(job.params.get("aspect_ratio", "1:1"))
        name = f"{job.id}-{tag}.{EXTENSIONS[config.image_format]}"
        seed = int(tag) if tag.isdigit() else zlib.crc32(tag.encode()) % 1000
        picture = render(
            job.prompt, seed, aspect_ratio, config.image_format, config.image_long_side
        )
        job.images[name] = PaddedImage.sized(
            picture, config.image_format, config.image_bytes, salt=name
        )
        return f"{job.cdn_base}/cdn/images/{name}"

    def _media(self, job: SimJob, fmt: MediaFormat, number: int, size: int) -> str:
        name = f"{job.id}-{fmt}{number}.{fmt}"
        job.images[name] = MediaFile.sized(fmt, size, salt=name)
        return f"{job.cdn_base}/cdn/images/{name}"

    def _track(self, job: SimJob, number: int, config: SimulatorConfig) -> dict[str, Any]:
        return {
            "id": f"trk_{job.id[:8]}_{number}",
            "audioUrl": self._media(job, "wav", number, config.audio_bytes),
            "imageUrl": self._image(job, f"cover{number}", config),
            "title": f"{job.prompt[:40] or 'Untitled'} ({number})",
            "tags": "simulated",
            "duration": round((config.audio_bytes - 44) / (44_100 * 4), 2),
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
        config = self.config_for(job)
        if job.expired(config.file_ttl_seconds):
            return error(404, "File expired")
        self.cdn_requests[name] += 1
        headers = request.headers
        number = self.cdn_requests[name]
        return serve_file(picture, config, number, headers.get("range"), headers.get("if-range"))


def job_id_of(file_name: str) -> str:
    return file_name.rsplit("-", 1)[0]


def fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
