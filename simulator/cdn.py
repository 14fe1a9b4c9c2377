"""The simulator's CDN: result files streamed in chunks, with download faults."""

import asyncio
from collections.abc import AsyncIterator

from starlette.responses import HTMLResponse, Response, StreamingResponse

from simulator.config import SimulatorConfig
from simulator.images import CHUNK, CONTENT_TYPES, PaddedImage
from simulator.media import MEDIA_TYPES, MediaFile
from simulator.responses import error


def serve_file(
    picture: PaddedImage | MediaFile, config: SimulatorConfig, request_number: int
) -> Response:
    """The `request_number`-th answer for one file, as the CDN faults say."""
    if request_number <= config.cdn_fail_first:
        return error(503, "CDN temporarily unavailable")
    if config.cdn_content == "html":
        return HTMLResponse("<html><body><h1>Welcome to the CDN</h1></body></html>")
    return StreamingResponse(
        stream(picture, config),
        media_type={**CONTENT_TYPES, **MEDIA_TYPES}[picture.fmt],
        headers={"Content-Length": str(picture.size), "Cache-Control": "max-age=86400"},
    )


async def stream(picture: PaddedImage | MediaFile, config: SimulatorConfig) -> AsyncIterator[bytes]:
    """The file in 64 KiB pieces; slowed by `cdn_chunk_delay`, cut in half by `cdn_truncate`
    (the declared length stays whole, so the client sees the break)."""
    budget = picture.size // 2 if config.cdn_truncate else picture.size
    for chunk in picture.chunks():
        for start in range(0, len(chunk), CHUNK):
            piece = chunk[start : start + CHUNK][:budget]
            if not piece:
                return
            budget -= len(piece)
            await asyncio.sleep(config.cdn_chunk_delay)
            yield piece
