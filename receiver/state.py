"""What the receiver's lifespan opens once and every handler reads from `request.state`."""

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypedDict

from starlette.applications import Starlette
from starlette.requests import Request

from receiver.admission import Admission
from receiver.live_log import LogFanout
from worker.deps import Deps, DepsOpener
from worker.settings import Settings

LISTS_AT_ONCE = 4  # job lists one process serves at once
LIST_WAIT = 1.0  # seconds a list waits for a place before it is refused
UPLOADS_AT_ONCE = 4  # `/v2/uploads` one process takes at once: each holds 8 MiB of memory


class State(TypedDict):
    deps: Deps
    fanout: LogFanout
    lists: Admission
    uploads: Admission


def lifespan_for(
    settings: Settings, open_deps: DepsOpener
) -> Callable[[Starlette], AbstractAsyncContextManager[State]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with open_deps(settings) as deps:
            # What start-up made (modules, clients) lives as long as the process: out of the
            # collector's sight, a full collection under load walks only what requests made.
            fanout = LogFanout(deps.ledger, settings.streams_max)
            gc.freeze()
            try:
                yield {
                    "deps": deps,
                    "fanout": fanout,
                    "lists": Admission(LISTS_AT_ONCE, LIST_WAIT),
                    "uploads": Admission(UPLOADS_AT_ONCE, LIST_WAIT),
                }
            finally:
                gc.unfreeze()
                await fanout.aclose()

    return lifespan


def deps_of(request: Request) -> Deps:
    deps: Deps = request.state.deps
    return deps


def lists_of(request: Request) -> Admission:
    lists: Admission = request.state.lists
    return lists


def uploads_of(request: Request) -> Admission:
    uploads: Admission = request.state.uploads
    return uploads


def fanout_of(request: Request) -> LogFanout:
    fanout: LogFanout = request.state.fanout
    return fanout
