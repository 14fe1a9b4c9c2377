"""Recovery endpoints: adopt a job submitted elsewhere, replay a job, and the dead letters."""

import json
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.bodies import API_BODY, BodyRefused, read_capped
from receiver.responses import error
from receiver.state import deps_of
from worker.queue import enqueue_replay
from worker.submission import track_job


async def track(request: Request) -> Response:
    """`POST /jobs/track {jobId}`: the poller lands it like any job imagedock submitted."""
    try:
        deadline = deps_of(request).settings.body_deadline
        body = json.loads(await read_capped(request, API_BODY, deadline))
        job_id = str(uuid.UUID(str(body["jobId"])))
    except BodyRefused as exc:
        return error(exc.status, exc.message)
    except (ValueError, KeyError, TypeError):
        return error(400, 'send {"jobId": "<Apiframe job UUID>"}')
    record, created = await track_job(deps_of(request).submitter, job_id)
    return JSONResponse(
        {"jobId": job_id, "ref": record.ref, "status": record.status.value},
        status_code=202 if created else 200,
    )


async def replay(request: Request) -> Response:
    """`POST /jobs/{id}/replay`: land again (a no-op for objects in S3), deliver events again."""
    deps = deps_of(request)
    record = await deps.ledger.find(request.path_params["job_id"])
    if record is None or record.job_id is None:
        return error(404, "no such job, or it has no Apiframe job id yet")
    queued = await enqueue_replay(deps.redis, record.job_id)
    await deps.ledger.log(record.ref, record.job_id, "receiver", "job.replay_requested")
    return JSONResponse({"jobId": record.job_id, "queued": queued}, status_code=202)


async def dead_letters(request: Request) -> Response:
    """`GET /events/dead?offset=&limit=`: a page of dead letters, newest first."""
    offset, limit = (
        request.query_params.get("offset", "0"),
        request.query_params.get("limit", "100"),
    )
    if not offset.isdigit() or not limit.isdigit() or not 1 <= int(limit) <= 1000:
        return error(400, "offset must be 0 or more, and limit from 1 to 1000")
    events = deps_of(request).events
    letters = await events.dead_letters(offset=int(offset), limit=int(limit))
    return JSONResponse({"deadLetters": letters, "offset": int(offset), "limit": int(limit)})


async def redrive(request: Request) -> Response:
    count = await deps_of(request).events.redrive()
    return JSONResponse({"redriven": count}, status_code=202)
