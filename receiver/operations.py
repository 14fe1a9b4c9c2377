"""Recovery endpoints: adopt a job submitted elsewhere, replay a job, and the dead letters."""

import math
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.bodies import API_BODY, BodyRefused, read_capped
from receiver.queries import query_of
from receiver.responses import error
from receiver.schemas import (
    DeadLetterQuery,
    DeadLetters,
    Redriven,
    ReplayQueued,
    TrackAccepted,
    TrackRequest,
)
from receiver.state import deps_of
from worker.apiframe import (
    ApiframeError,
    AuthenticationError,
    Forbidden,
    JobNotFound,
    RateLimited,
)
from worker.ledger import keys
from worker.ledger.ledger import Conflict
from worker.replays import REPLAY_INTERVAL  # a replay asked for again within it is refused
from worker.runtime.queue import enqueue_replay
from worker.submission import track_job


async def track(request: Request) -> Response:
    """`POST /jobs/track {jobId}`: the poller lands it like any job imagedock submitted."""
    try:
        deadline = deps_of(request).settings.body_deadline
        body = TrackRequest.model_validate_json(await read_capped(request, API_BODY, deadline))
        job_id = str(uuid.UUID(body.job_id))
    except BodyRefused as exc:
        return error(exc.status, exc.message)
    except ValueError:  # pydantic's ValidationError is one
        return error(400, 'send {"jobId": "<Apiframe job UUID>"}')
    try:
        record, created = await track_job(deps_of(request).submitting, job_id)
    except JobNotFound:
        return error(404, f"Apiframe does not know job {job_id}")
    except Conflict as exc:  # the same job tracked twice at once: the other request has it
        return error(409, str(exc))
    except ApiframeError as exc:
        return apiframe_error(exc)
    tracked = TrackAccepted(job_id=job_id, ref=record.ref, status=record.status)
    return JSONResponse(tracked.body(), status_code=202 if created else 200)


def apiframe_error(exc: ApiframeError) -> JSONResponse:
    """Apiframe's refusal to say what it knows of a job, as the status that tells the caller
    what to do next."""
    if isinstance(exc, RateLimited):
        retry_after = str(round(exc.retry_after or 1))
        return error(429, f"Apiframe: {exc}", headers={"Retry-After": retry_after})
    if isinstance(exc, AuthenticationError | Forbidden):
        return error(502, f"Apiframe refused imagedock's API key: {exc}")
    return error(503, f"Apiframe: {exc}; retry")


async def replay(request: Request) -> Response:
    """`POST /jobs/{id}/replay`: land again (a no-op for objects in S3), deliver events again."""
    deps = deps_of(request)
    record = await deps.ledger.find(request.path_params["job_id"])
    if record is None or record.job_id is None:
        return error(404, "no such job, or it has no Apiframe job id yet")
    wait = await deps.ledger.marks.once_within(keys.replaying(record.job_id), REPLAY_INTERVAL)
    if wait:  # one replay lands and delivers everything again: more only repeat it
        retry = {"Retry-After": str(math.ceil(wait))}
        return error(429, f"this job was replayed in the last {REPLAY_INTERVAL:g} s", headers=retry)
    queued = await enqueue_replay(deps.redis, record.job_id)
    await deps.ledger.log(record.ref, record.job_id, "receiver", "job.replay_requested")
    return JSONResponse(ReplayQueued(job_id=record.job_id, queued=queued).body(), 202)


async def dead_letters(request: Request) -> Response:
    """`GET /events/dead?offset=&limit=`: a page of dead letters, newest first."""
    query = query_of(request, DeadLetterQuery)
    events = deps_of(request).events
    letters = await events.dead_letters(offset=query.offset, limit=query.limit)
    page = DeadLetters(dead_letters=letters, offset=query.offset, limit=query.limit)
    return JSONResponse(page.body())


async def redrive(request: Request) -> Response:
    count = await deps_of(request).events.redrive()
    return JSONResponse(Redriven(redriven=count).body(), status_code=202)
