"""Fetching result files safely: allowed hosts only, connecting to the address that was checked,
re-checked redirects, no content encodings, a cap on the bytes that arrive (one per medium), a
SHA-256 computed while streaming, and the type read from the magic bytes, which must be of the
medium the job promised (an image, a video or audio).

Connections are pooled per host name (`HostClients`): one made, and verified, for one name never
carries a request for another, and a job's images, and the next job's, skip the TCP and TLS
handshakes. Bytes go to a `Destination` as they arrive (`landing.upload` writes them to S3 a part
at a time), so no file, however large, sits in memory or on disk whole.
"""

import asyncio
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urljoin

import httpx
import structlog

from worker.landing.errors import PermanentError, TransientError
from worker.landing.hosts import HostPolicy

MAX_REDIRECTS = 3
MAX_RESUMES = 4  # requests one download may take, the first included, when its body breaks off
PERMANENT_STATUSES = {400, 401, 403, 404, 410, 451}
IDENTITY = {"Accept-Encoding": "identity"}
CLOSE = {"Connection": "close"}
SIGNATURES = (  # (prefix, content type, extension); the RIFF and ISO-BMFF families below
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
    (b"\x1a\x45\xdf\xa3", "video/webm", "webm"),  # EBML: Matroska's WebM
    (b"OggS", "audio/ogg", "ogg"),
    (b"ID3", "audio/mpeg", "mp3"),  # an MP3 with its tag first
    (b"fLaC", "audio/flac", "flac"),
)
RIFF = {b"WEBP": ("image/webp", "webp"), b"WAVE": ("audio/wav", "wav")}
# ISO base media files, by their major brand: an image, audio or a video in the same container.
BRANDS = {
    **dict.fromkeys((b"avif", b"avis"), ("image/avif", "avif")),
    **dict.fromkeys((b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"), ("image/heic", "heic")),
    **dict.fromkeys((b"M4A ", b"M4B ", b"M4P ", b"F4A "), ("audio/mp4", "m4a")),
    b"qt  ": ("video/quicktime", "mov"),
    **dict.fromkeys(
        (b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash",
         b"M4V ", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"f4v "),
        ("video/mp4", "mp4"),
    ),
}  # fmt: skip
# Brands that say only "ISO media": the medium the job promised tells a track from a video.
GENERIC = frozenset({b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42"})
SHORTEST = 16  # bytes: no image, video or track is smaller
MEDIA = {"image": "an image", "video": "a video", "audio": "audio"}
log = structlog.get_logger("download")


class Destination(Protocol):
    """Where a download's bytes go as they arrive: told the file's type (from its first bytes)
    and size (if the CDN said it) before the first byte."""

    async def begin(self, content_type: str, extension: str, size: int | None) -> None: ...

    async def write(self, chunk: bytes) -> None: ...


@dataclass(frozen=True)
class Download:
    """What was fetched: its size, digest and type; the bytes went to the destination."""

    size: int
    sha256: str
    content_type: str
    extension: str
    source_url: str


@dataclass
class Received:
    """One download's state across the requests that make it (a resumed one takes several)."""

    size: int = 0
    head: bytes = b""
    pending: list[bytes] = field(default_factory=list)  # bytes held until the type is known
    begun: bool = False
    ranges: bool = False  # the CDN said it serves byte ranges: a broken body can resume
    total: int | None = None
    validator: str | None = None  # the first answer's ETag or Last-Modified: `If-Range`
    # Hashed in the loop as the bytes arrive: at about 1.4 GB/s, handing batches to a thread
    # cost more wall time than it saved (BENCHMARKS.md, large video).
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)


class Broken(Exception):
    """The body broke off after some bytes, from a CDN that serves ranges: resume."""


def sniff(head: bytes, medium: str | None = None) -> tuple[str, str] | None:
    """The content type and extension the first bytes announce, never the URL or the header;
    `medium` (what the job promised) only tells which a generic ISO media file is."""
    if head[:4] == b"RIFF":
        return RIFF.get(head[8:12])
    if head[4:8] == b"ftyp":
        if medium == "audio" and head[8:12] in GENERIC:
            return "audio/mp4", "m4a"
        return BRANDS.get(head[8:12])
    for prefix, content_type, extension in SIGNATURES:
        if head.startswith(prefix):
            return content_type, extension
    return mpeg_audio(head)


def mpeg_audio(head: bytes) -> tuple[str, str] | None:
    """An MP3 frame, or an AAC one in ADTS, by its header's sync word and fields."""
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:  # no 11-bit sync word
        return None
    if head[1] & 0xF6 == 0xF0:  # ADTS: a 12-bit sync word and layer 00, AAC
        return "audio/aac", "aac"
    layer, bitrate, rate = (head[1] >> 1) & 3, head[2] >> 4, (head[2] >> 2) & 3
    if layer == 1 and bitrate not in (0, 15) and rate != 3:  # Layer III, a valid bitrate
        return "audio/mpeg", "mp3"
    return None


def medium_of(content_type: str) -> str:
    """`image`, `video` or `audio`."""
    return content_type.split("/", 1)[0]


class HostClients:
    """A pooled HTTP client for each result host name, the first `most` names met. Past them
    (a pattern admitting endless names), one more client whose every request closes its
    connection after it, so none is ever carried over to another name."""

    def __init__(self, new_client: Callable[[], httpx.AsyncClient], most: int = 32) -> None:
        self._new_client = new_client
        self._most = most
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._unpooled: httpx.AsyncClient | None = None

    def for_host(self, host: str) -> tuple[httpx.AsyncClient, bool]:
        """The client to fetch from `host` with, and whether it keeps connections."""
        client = self._clients.get(host)
        if client is None and len(self._clients) < self._most:
            client = self._clients[host] = self._new_client()
        if client is not None:
            return client, True
        if self._unpooled is None:
            self._unpooled = self._new_client()
        return self._unpooled, False

    async def aclose(self) -> None:
        clients = [*self._clients.values(), *filter(None, [self._unpooled])]
        self._clients, self._unpooled = {}, None
        await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)


class Downloader:
    def __init__(self, hosts: HostClients, policy: HostPolicy, caps: Mapping[str, int]) -> None:
        self._hosts = hosts
        self._policy = policy
        self._caps = caps  # the most bytes of a file, by medium

    async def fetch(self, url: str, medium: str, into: Destination) -> Download:
        """Stream `url`, a file of `medium`, into `into`, following at most a few checked
        redirects; a body that breaks off part-way resumes with `Range` where the CDN allows
        it, a few times."""
        got = Received()
        for _ in range(MAX_RESUMES):
            try:
                return await self._fetch_from(url, medium, into, got)
            except Broken as exc:
                log.info("download.resuming", url=url, at=got.size, error=repr(exc.__cause__))
        raise TransientError(f"download of {url} broke off {MAX_RESUMES} times")

    async def _fetch_from(
        self, url: str, medium: str, into: Destination, got: Received
    ) -> Download:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            target = await self._policy.check(current)
            pinned = httpx.URL(current).copy_with(host=str(target.address))
            # The host's own pool, whose connections were all made for this name, or a
            # connection closed after this request: one made for another name on the same
            # address must never carry it.
            client, pooled = self._hosts.for_host(target.host)
            headers = {"Host": httpx.URL(current).netloc.decode(), **IDENTITY}
            if got.size:  # the rest, and only if the file is still the one begun
                headers["Range"] = f"bytes={got.size}-"
                headers["If-Range"] = got.validator or ""
            try:
                async with client.stream(
                    "GET",
                    pinned,
                    headers=headers if pooled else {**headers, **CLOSE},
                    extensions={"sni_hostname": target.host},
                ) as response:
                    if response.is_redirect and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    return await self._receive(url, medium, response, into, got)
            except httpx.TransportError as exc:
                if got.ranges and got.size:
                    raise Broken from exc
                raise TransientError(f"download of {url} broke off: {exc!r}") from exc
        raise PermanentError(f"download of {url} redirected more than {MAX_REDIRECTS} times")

    async def _receive(
        self,
        url: str,
        medium: str,
        response: httpx.Response,
        into: Destination,
        got: Received,
    ) -> Download:
        status = response.status_code
        if status in PERMANENT_STATUSES:
            expired = " (the file has probably expired)" if status in (403, 404, 410) else ""
            raise PermanentError(f"the CDN answered {status} for {url}{expired}")
        if status == 429 or status >= 500:
            raise TransientError(f"the CDN answered {status} for {url}")
        if got.size and not resumed_at(response, got.size, got.total):
            raise TransientError(f"the CDN did not resume {url} at byte {got.size} ({status})")
        if not got.size and status != 200:
            raise PermanentError(f"the CDN answered an unexpected {status} for {url}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            # Decoding would let a few compressed bytes grow past any cap in memory.
            raise PermanentError(f"{url} came with Content-Encoding {encoding!r}, not identity")
        if not got.size:
            declared = response.headers.get("content-length", "")
            got.total = int(declared) if declared.isdigit() else None
            got.validator = strong_etag(response) or response.headers.get("last-modified")
            # Resumable only with its whole length known and a way to tell the file unchanged.
            accepts = response.headers.get("accept-ranges", "").strip().lower() == "bytes"
            got.ranges = accepts and got.total is not None and got.validator is not None
        cap = self._caps[medium]
        if got.total is not None and got.total > cap:
            raise PermanentError(self._too_big(url, medium, got.total))
        async for chunk in response.aiter_raw():  # the bytes as they arrive, never decoded
            got.size += len(chunk)
            if got.size > cap:
                raise PermanentError(self._too_big(url, medium, got.size))
            got.sha256.update(chunk)
            if got.begun:
                await into.write(chunk)
                continue
            got.head += chunk[: 16 - len(got.head)]
            got.pending.append(chunk)
            if len(got.head) >= 16:
                await self._begin(url, medium, into, got)
        if got.total is not None and got.size != got.total:
            raise TransientError(f"{url} ended at byte {got.size} of {got.total}")
        if got.size < SHORTEST:
            raise PermanentError(f"{url} is {got.size} bytes: too short to be {MEDIA[medium]}")
        if not got.begun:  # a file shorter than the head
            await self._begin(url, medium, into, got)
        found = sniff(got.head, medium)
        assert found is not None
        return Download(got.size, got.sha256.hexdigest(), *found, url)

    async def _begin(self, url: str, medium: str, into: Destination, got: Received) -> None:
        content_type, extension = self._check_type(url, medium, got.head)
        await into.begin(content_type, extension, got.total)
        got.begun = True
        for held in got.pending:
            await into.write(held)
        got.pending.clear()

    @staticmethod
    def _check_type(url: str, medium: str, head: bytes) -> tuple[str, str]:
        found = sniff(head, medium)
        if found is None or medium_of(found[0]) != medium:
            what = found[0] if found else f"a file starting {head[:12]!r}"
            raise PermanentError(f"{url} is not {MEDIA[medium]}: the CDN sent {what}")
        return found

    def _too_big(self, url: str, medium: str, size: int) -> str:
        setting = f"IMAGEDOCK_MAX_{medium.upper()}_BYTES"
        return f"{url} is over the {self._caps[medium]}-byte cap ({setting}): {size}"


def resumed_at(response: httpx.Response, offset: int, total: int | None) -> bool:
    """Whether the answer is the whole rest of the same file from `offset`: a 206 whose range
    runs from there to the end of a file of the length first declared."""
    found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", response.headers.get("content-range", ""))
    if response.status_code != 206 or found is None or total is None:
        return False
    start, end, length = (int(group) for group in found.groups())
    return (start, end, length) == (offset, total - 1, total)


def strong_etag(response: httpx.Response) -> str | None:
    """The answer's ETag, if it is a strong one: `If-Range` takes no weak validator."""
    etag = response.headers.get("etag")
    return etag if etag and not etag.startswith("W/") else None
