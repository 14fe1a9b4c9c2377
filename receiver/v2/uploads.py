"""`POST /v2/uploads`: one file, as Apiframe takes it (multipart, the field `file`; typed by
its magic bytes, never its declared type; 25 MB for an image or audio, 50 MB for a video), kept
in the team's bucket under the caller's prefix. The URL answered is a presigned GET that lasts
as long as a reference a job names may need (`SubmitDeps.reference_seconds`), past Apiframe's
own hour or two.

An upload costs a bounded amount: a few are read at once per process (`UPLOADS_AT_ONCE` in
`receiver.state`; the next waits a moment, then gets 429), the body is cut off past the largest
file's size, and it must arrive within `DEADLINE` seconds.
"""

import asyncio
import hashlib
import time
import uuid

from python_multipart.exceptions import MultipartParseError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive

from receiver.admission import Busy
from receiver.state import deps_of, uploads_of
from receiver.v2.access import refusal
from worker.landing.download import medium_of, sniff
from worker.landing.storage import Blob
from worker.timestamps import iso_time

MB = 1000 * 1000
MOST = {"image": 25 * MB, "audio": 25 * MB, "video": 50 * MB}
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
    deps = deps_of(request)
    limited = Request(request.scope, capped(request.receive, FORM_MOST))
    try:
        async with asyncio.timeout(DEADLINE):
            async with limited.form(max_files=1, max_fields=8) as form:  # closes its files
                file = form.get("file")
                if not isinstance(file, UploadFile):
                    return refusal(400, INVALID, {"file": "Required: one file, in the field file"})
                body = await file.read()
    except TooLarge:
        return too_large()
    except TimeoutError:
        return refusal(408, f"The body took over {DEADLINE:g} s to arrive")
    except (MultiPartException, MultipartParseError) as exc:
        return refusal(400, INVALID, {"file": f"Unreadable multipart body: {exc}"})
    found = sniff(body[:64])
    if found is None:
        return refusal(400, INVALID, {"file": "Unsupported file type (by its first bytes)"})
    content_type, extension = found
    kind = medium_of(content_type)
    if len(body) > MOST[kind]:
        return refusal(400, INVALID, {"file": f"A {kind} is at most {MOST[kind] // MB} MB"})
    upload_id = uuid.uuid4()
    key = deps.store.key(f"uploads/{caller}", f"{upload_id}.{extension}")
    digest = hashlib.sha256(body).hexdigest()
    metadata = {"sha256": digest, "caller": caller}
    await deps.store.put_once(key, Blob(body, digest, content_type, metadata))
    lasts = deps.submitting.reference_seconds
    urls = await deps.store.presign([key], lasts)
    answer = {
        "id": str(upload_id),
        "url": urls[key],
        "kind": kind,
        "contentType": content_type,
        "byteSize": len(body),
        "expiresAt": iso_time(time.time() + lasts),
    }
    return JSONResponse(answer, 201)
