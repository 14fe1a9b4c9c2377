"""`GET /v2/me` and `GET /v2/models`.

`me` names the caller (its key's name, never the key) and imagedock's Apiframe team, whose
credits every caller draws on: read from Apiframe at most once a `FRESH` interval per process,
so a thousand callers checking their credentials cost Apiframe one call. `models` is the
catalogue imagedock serves, public as Apiframe's is.
"""

import asyncio
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.state import deps_of
from receiver.v2.access import refusal
from worker.apiframe import ApiframeError
from worker.apiframe.catalog import OPERATIONS
from worker.deps import Deps

FRESH = 60.0  # seconds the team's credits are told again without asking Apiframe
MODALITIES = ("image", "video", "music")


def stable_id(what: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"imagedock/{what}"))


class Account:
    """`GET /v2/me`, with the team's credits as last read from Apiframe."""

    def __init__(self) -> None:
        self._team: dict[str, Any] | None = None
        self._read_at = -FRESH
        self._reading = asyncio.Lock()  # one read at a time: the others take its answer

    async def me(self, request: Request, caller: str) -> Response:
        return JSONResponse(
            {
                "user": {
                    "id": stable_id(f"caller:{caller}"),
                    "email": f"{caller}@imagedock.invalid",
                    "role": "MEMBER",
                },
                "team": await self.team(deps_of(request)),
                "apiKey": {"id": stable_id(f"key:{caller}"), "name": caller, "prefix": caller[:8]},
            }
        )

    async def team(self, deps: Deps) -> dict[str, Any] | None:
        """Apiframe's team, as imagedock's own key sees it; None while Apiframe does not
        answer."""
        async with self._reading:
            if time.monotonic() - self._read_at >= FRESH:
                try:
                    team = (await deps.apiframe.me()).get("team")
                except ApiframeError:
                    team = None
                # The team's billing id is the operator's business, not a caller's.
                shown = {**team, "customerId": None} if isinstance(team, dict) else None
                self._team, self._read_at = shown, time.monotonic()
        return self._team


async def models(request: Request) -> Response:
    modality = request.query_params.get("modality")
    if modality is not None and modality not in MODALITIES:
        return refusal(400, "Invalid query", {"modality": "Expected image, video or music"})
    entries: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS.values():
        if modality not in (None, operation.makes):
            continue
        for name in operation.models:
            entries.setdefault(name, {"id": name, "label": name, "modality": operation.makes})
    return JSONResponse({"models": list(entries.values())})
