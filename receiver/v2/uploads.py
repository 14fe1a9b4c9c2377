"""`POST /v2/uploads`: one file, as Apiframe takes it (multipart, the field `file`; typed by
its magic bytes, never its declared type; 25 MB for an image or audio, 50 MB for a video), kept
in the team's bucket under the caller's prefix. The URL answered is a presigned GET that lasts
as long as a reference a job names may need (`SubmitDeps.reference_seconds`), past Apiframe's
own hour or two.

An upload costs a bounded amount: a few are read at once per process (`UPLOADS_AT_ONCE` in
`receiver.state`; the next waits a moment, then gets 429), the body is cut off past the largest
file's size and must arrive within `DEADLINE` seconds, and the file, spooled to disk as it
arrives, is read back into the bucket one 8 MiB part at a time. The bucket's lifecycle rule
removes uploads after two days (`deploy/s3-lifecycle.json`).
"""

import asyncio
import hashlib
import time
import uuid

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from python_multipart.exceptions import MultipartParseError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive

from receiver.admission import Busy
from receiver.state import deps_of, uploads_of
from receiver.v2.access import refusal
from worker.deps import Deps
from worker.landing.download import Download, medium_of, sniff
from worker.landing.errors import LandingError
from worker.landing.upload import PART, ObjectWriter
from worker.timestamps import iso_time

log = structlog.get_logger("v2")

MB = 1000 * 1000
MOST = {"image": 25 * MB, "audio": 25 * MB, "video": 50 * MB}
# What Apiframe's uploads take: PNG, JPEG, WebP, GIF, MP4, WebM, MOV, MP3, WAV, OGG, M4A.
TAKEN = frozenset({
    "image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "video/webm",
    "video/quicktime", "audio/mpeg", "audio/wav", "audio/ogg", "audio/mp4",
})  # fmt: skip
NAMED = "PNG, JPEG, WebP, GIF, MP4, WebM, MOV, MP3, WAV, OGG or M4A (by its first bytes)"
FORM_MOST = max(MOST.values()) + 64 * 1024  # the file and the form around it
DEADLINE = 300.0  # seconds: 50 MB at about 1.3 Mbit/s
INVALID = "Validation failed"


class TooLarge(Exception):
    pass


def capped(receive: Receive, most: int) -> Receive:
    """`receive`, raising `TooLarge` once the body passes `most` bytes."""
    seen = 0

    async def receive_capped() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > most:
            raise TooLarge
        return message

    return receive_capped


async def upload(request: Request, caller: str) -> Response:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > FORM_MOST:
        return too_large()
    try:
        async with uploads_of(request).place():
            return await keep(request, caller)
    except Busy as exc:
        return refusal(429, f"uploads: {exc}", retry_after=1)


def too_large() -> Response:
    """As Apiframe refuses an oversize file: 400 naming it."""
    return refusal(400, INVALID, {"file": f"Oversize: the body is over {FORM_MOST} bytes"})


async def keep(request: Request, caller: str) -> Response:
    limited = Request(request.scope, capped(request.receive, FORM_MOST))
    try:
        async with asyncio.timeout(DEADLINE):
            # Starlette spools the file to disk past 1 MB; it is read back a part at a time.
            async with limited.form(max_files=1, max_fields=8) as form:  # closes its files
                file = form.get("file")
                if not isinstance(file, UploadFile):
                    return refusal(400, INVALID, {"file": "Required: one file, in the field file"})
                return await store(deps_of(request), file, caller)
    except TooLarge:
        return too_large()
    except TimeoutError:
        return refusal(408, f"The body took over {DEADLINE:g} s to arrive")
    except (MultiPartException, MultipartParseError) as exc:
        return refusal(400, INVALID, {"file": f"Unreadable multipart body: {exc}"})


async def store(deps: Deps, file: UploadFile, caller: str) -> Response:
    """Put the file in the bucket as it is read back, a part at a time (`ObjectWriter`)."""
    head = await file.read(PART)
    found = sniff(head[:64])
    if found is None or found[0] not in TAKEN:
        return refusal(400, INVALID, {"file": f"Unsupported file type: one of {NAMED}"})
    content_type, extension = found
    kind, size = medium_of(content_type), file.size or len(head)
    if size > MOST[kind]:
        article = "An" if kind in ("image", "audio") else "A"
        return refusal(400, INVALID, {"file": f"{article} {kind} is at most {MOST[kind] // MB} MB"})
    upload_id = uuid.uuid4()
    metadata = {"caller": caller, "source-url": f"upload:{upload_id}"}
    writer = ObjectWriter(deps.store, f"uploads/{caller}", str(upload_id), metadata)
    digest = hashlib.sha256()
    try:
        await writer.begin(content_type, extension, size)
        chunk = head
        while chunk:
            digest.update(chunk)
            await writer.write(chunk)
            chunk = await file.read(PART)
        done = Download(size, digest.hexdigest(), content_type, extension, metadata["source-url"])
        await writer.finish(done)
    except (ClientError, BotoCoreError, LandingError) as exc:
        await writer.abort()
        log.warning("upload.failed", caller=caller, error=repr(exc)[:300])
        return refusal(502, "The bucket did not take the file; try again")
    lasts = deps.submitting.reference_seconds
    urls = await deps.store.presign([writer.key], lasts)
    answer = {
        "id": str(upload_id),
        "url": urls[writer.key],
        "kind": kind,
        "contentType": content_type,
        "byteSize": size,
        "expiresAt": iso_time(time.time() + lasts),
    }
    return JSONResponse(answer, 201)
