"""The simulator's CDN: result files streamed in chunks, byte ranges served, with download
faults."""

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator

from starlette.responses import HTMLResponse, Response, StreamingResponse

from simulator.config import SimulatorConfig
from simulator.images import CHUNK, CONTENT_TYPES, PaddedImage
from simulator.media import MEDIA_TYPES, MediaFile
from simulator.responses import error

RANGE = re.compile(r"bytes=(\d+)-")


def serve_file(
    picture: PaddedImage | MediaFile,
    config: SimulatorConfig,
    request_number: int,
    ranged: str | None = None,
    if_range: str | None = None,
) -> Response:
    """The `request_number`-th answer for one file, as the CDN faults say; with `cdn_ranges`,
    a `Range: bytes=N-` request is answered 206 with the rest of the file, unless its
    `If-Range` names another version (then the whole file, 200)."""
    if request_number <= config.cdn_fail_first:
        return error(503, "CDN temporarily unavailable")
    if config.cdn_content == "html":
        return HTMLResponse("<html><body><h1>Welcome to the CDN</h1></body></html>")
    etag = '"' + hashlib.sha256(f"{picture.salt}:{picture.size}".encode()).hexdigest()[:16] + '"'
    headers = {"Content-Length": str(picture.size), "Cache-Control": "max-age=86400", "ETag": etag}
    media_type = {**CONTENT_TYPES, **MEDIA_TYPES}[picture.fmt]
    if config.cdn_ranges:
        headers["Accept-Ranges"] = "bytes"
    found = RANGE.fullmatch(ranged or "")
    same = if_range is None or if_range == etag
    if config.cdn_ranges and found and same and int(found.group(1)) < picture.size:
        start = int(found.group(1))
        headers["Content-Length"] = str(picture.size - start)
        headers["Content-Range"] = f"bytes {start}-{picture.size - 1}/{picture.size}"
        body = stream(picture, config, start=start)
        return StreamingResponse(body, status_code=206, media_type=media_type, headers=headers)
    return StreamingResponse(stream(picture, config), media_type=media_type, headers=headers)


async def stream(
    picture: PaddedImage | MediaFile, config: SimulatorConfig, *, start: int = 0
) -> AsyncIterator[bytes]:
    """The file from byte `start` in 64 KiB pieces; slowed by `cdn_chunk_delay`; a whole file
    is cut in half by `cdn_truncate` (the declared length stays whole, so the client sees the
    break), a range request never is."""
    budget = picture.size // 2 if config.cdn_truncate and not start else picture.size
    skip = start
    for chunk in picture.chunks():
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        chunk, skip = chunk[skip:], 0
        for offset in range(0, len(chunk), CHUNK):
            piece = chunk[offset : offset + CHUNK][:budget]
            if not piece:
                return
            budget -= len(piece)
            await asyncio.sleep(config.cdn_chunk_delay)
            yield piece
