"""Apiframe's ten job routes (`POST /v2/images/generate`, `/v2/videos/generate`...): the body
Apiframe takes, checked as imagedock checks its own; the job recorded under the caller; and
Apiframe's 202 `{jobId, status}`, whose `jobId` is imagedock's own id for the job.

A caller's `webhookUrl` and `webhookEvents` are kept with the job, for the callback sink
(`worker.sinks.callback`); Apiframe itself is sent imagedock's webhook, never the caller's.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.bodies import API_BODY, BodyRefused, read_capped
from receiver.responses import not_admitted
from receiver.state import deps_of
from receiver.v2.access import refusal, with_caller
from worker import references
from worker.apiframe import ApiframeRequest
from worker.apiframe.catalog import OPERATIONS
from worker.apiframe.models import EventName
from worker.callers.jobs import SHOWN, job_id_of, ref_of
from worker.deps import Deps
from worker.landing.errors import LandingError
from worker.ledger.admission import NotAdmitted
from worker.ledger.ledger import Conflict
from worker.references import BadReference
from worker.submission import ActionUnavailable, BadParent, Callback, accept_job
from worker.validation import field_problems

INVALID = "Validation failed"
LOOKUP = 3.0  # seconds a callback host's name may take to resolve
CALLBACK_REFUSED = (
    "not an allowed webhook: an http(s) URL of a public host, or of a host named in "
    "IMAGEDOCK_CALLBACK_HOSTS"
)
log = structlog.get_logger("v2")
EVERY_EVENT = ("progress", "completed", "failed")
# imagedock's own fields of a submission, which Apiframe's strict bodies do not take.
IMAGEDOCKS = ("operation", "params", "metadata")


class Wanted(BaseModel):
    """The webhook a caller asks for."""

    model_config = ConfigDict(extra="ignore")

    webhookUrl: str | None = Field(default=None, min_length=1, max_length=2048)
    webhookEvents: list[EventName] | None = Field(default=None, min_length=1)


def submit_to(operation: str) -> Callable[[Request], Awaitable[Response]]:
    """The handler of the route `/v2/{operation}`."""

    async def submit(request: Request, caller: str) -> Response:
        deps = deps_of(request)
        read = await read_submission(request, operation, deps)
        if isinstance(read, Response):
            return read
        job, wanted = read
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 255:
            return refusal(400, INVALID, {"Idempotency-Key": "1 to 255 characters"})
        callback = None
        if wanted.webhookUrl is not None:
            if not await callback_allowed(deps, wanted.webhookUrl, caller):
                return refusal(400, INVALID, {"webhookUrl": CALLBACK_REFUSED})
            callback = Callback(wanted.webhookUrl, tuple(wanted.webhookEvents or EVERY_EVENT))
        if job.route.acts_on_parent:
            parent = await own_parent(deps, job, caller)
            if parent is None:
                return refusal(400, INVALID, {"parentJobId": "no such job of yours"})
            job = job.model_copy(update={"parent_job_id": parent})
        return await accept(deps, job, key, caller, callback)

    return with_caller(submit)


async def read_submission(
    request: Request, operation: str, deps: Deps
) -> tuple[ApiframeRequest, Wanted] | Response:
    """The body as Apiframe's route takes it, and the webhook it asks for; or the refusal."""
    try:
        body = json.loads(await read_capped(request, API_BODY, deps.settings.body_deadline))
    except BodyRefused as exc:
        return refusal(exc.status, exc.message)
    except (ValueError, RecursionError):  # a deep nest is no body Apiframe takes either
        return refusal(400, "Invalid JSON body")
    if not isinstance(body, dict):
        return refusal(400, INVALID, {"": "Expected an object"})
    foreign = [name for name in IMAGEDOCKS if name in body]
    if foreign:
        return refusal(400, INVALID, {name: f"Unrecognized key: {name}" for name in foreign})
    if "webhook_url" in body and "webhookUrl" not in body:  # the product page's spelling
        body["webhookUrl"] = body.pop("webhook_url")
    asked = {name: body.pop(name) for name in ("webhookUrl", "webhookEvents") if name in body}
    if "model" not in body and not OPERATIONS[operation].acts_on_parent:
        return refusal(400, INVALID, {"model": "Required"})  # Apiframe names no default
    try:
        job = ApiframeRequest.model_validate({**body, "operation": operation})
        wanted = Wanted.model_validate(asked)
    except ValidationError as exc:
        return refusal(400, INVALID, field_problems(exc))
    if next(references.references(job.params or {}), None) is not None:
        block = job.catalogued.params_key if job.catalogued else "params"
        return refusal(400, INVALID, {block: "takes URLs (POST /v2/uploads makes one)"})
    return job, wanted


async def callback_allowed(deps: Deps, url: str, caller: str) -> bool:
    """Whether `IMAGEDOCK_CALLBACK_HOSTS` admits the caller's webhook URL. The caller is told
    only no: what a name resolves to inside the network is not its to learn. A lookup gets
    `LOOKUP` seconds, so a name under a slow nameserver holds nothing for long."""
    try:
        async with asyncio.timeout(LOOKUP):
            await deps.callback_hosts.check(url)
    except (LandingError, TimeoutError) as exc:
        said = str(exc) or f"no answer in {LOOKUP:g} s"
        log.info("callback.refused", caller=caller, host=urlsplit(url).hostname, reason=said)
        return False
    return True


async def own_parent(deps: Deps, job: ApiframeRequest, caller: str) -> str | None:
    """The ref of the caller's own job the action names by its `/v2/` id, or None."""
    ref = ref_of(job.parent_job_id or "")
    record = await deps.ledger.get(ref) if ref else None
    return ref if record is not None and record.caller == caller else None


async def accept(
    deps: Deps, job: ApiframeRequest, key: str | None, caller: str, callback: Callback | None
) -> Response:
    """Recorded and queued, answered at once: Apiframe's 202, with imagedock's id for the job.
    What Apiframe later answers imagedock (a refusal fails the job; throttling and an empty
    balance only delay it) the caller reads in the job and its `failed` webhook."""
    try:
        record = await accept_job(
            deps.submitting, job, idempotency_key=key, caller=caller, callback=callback
        )
    except ActionUnavailable as exc:  # as Apiframe answers an action its parent cannot take
        return refusal(409, str(exc))
    except BadParent as exc:
        return refusal(400, INVALID, {"parentJobId": str(exc)})
    except BadReference as exc:
        return refusal(400, INVALID, {exc.field: str(exc)})
    except Conflict as exc:
        return refusal(409, str(exc))
    except NotAdmitted as exc:
        return not_admitted(exc)
    return JSONResponse({"jobId": job_id_of(record.ref), "status": SHOWN[record.status]}, 202)
