"""`POST /jobs/replay` and `GET /jobs/replay/{id}`: replay or resubmit every job a filter
selects, counted first and done in the background (`worker.replays`)."""

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.bodies import API_BODY, BodyRefused, read_capped
from receiver.responses import error
from receiver.schemas import BulkReplayRequest, BulkReplayView
from receiver.state import deps_of
from worker import replays
from worker.ledger.keys import is_ref
from worker.ledger.waiting import Priority
from worker.validation import field_problems


async def start(request: Request) -> Response:
    deps = deps_of(request)
    try:
        body = await read_capped(request, API_BODY, deps.settings.body_deadline)
        asked = BulkReplayRequest.model_validate_json(body)
    except BodyRefused as exc:
        return error(exc.status, exc.message)
    except ValidationError as exc:
        return error(400, "invalid replay request", details=field_problems(exc))
    chosen, refused = asked.filter(), asked.refusal()
    if refused is not None:
        return error(400, "invalid replay request", details={"status": refused})
    try:
        refs = await replays.select(deps.redis, chosen)
    except replays.NothingSelected as exc:
        return error(400, "the filter selects no job to replay", details={exc.field: str(exc)})
    if asked.dry_run:
        view = BulkReplayView(id=None, filter=chosen.said(), resubmit=asked.resubmit,
                              selected=len(refs))  # fmt: skip
        return JSONResponse(view.body())
    try:
        progress = await replays.start(
            deps.redis, chosen, refs, resubmit=asked.resubmit, priority=Priority[asked.priority]
        )
    except replays.AlreadyRunning as exc:
        return error(409, str(exc))
    return JSONResponse(BulkReplayView(**progress.public()).body(), 202)


async def progress(request: Request) -> Response:
    bulk_id = request.path_params["bulk_id"]
    found = await replays.progress_of(deps_of(request).redis, bulk_id) if is_ref(bulk_id) else None
    if found is None:
        return error(404, "no such bulk replay (each is kept for a week)")
    return JSONResponse(BulkReplayView(**found.public()).body())
