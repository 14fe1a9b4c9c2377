"""What the receiver's lifespan opens once and every handler reads from `request.state`."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypedDict

from starlette.applications import Starlette
from starlette.requests import Request

from worker.deps import Deps, DepsOpener
from worker.settings import Settings


class State(TypedDict):
    deps: Deps


def lifespan_for(
    settings: Settings, open_deps: DepsOpener
) -> Callable[[Starlette], AbstractAsyncContextManager[State]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with open_deps(settings) as deps:
            yield {"deps": deps}

    return lifespan


def deps_of(request: Request) -> Deps:
    deps: Deps = request.state.deps
    return deps
