"""Fetching result files safely: allowed hosts only, connecting to the address that was checked,
re-checked redirects, no content encodings, a cap on the bytes that arrive (one per medium), a
SHA-256 computed while streaming, and the type read from the magic bytes, which must be of the
medium the job promised (an image, a video or audio).

Connections are pooled per host name (`HostClients`): one made, and verified, for one name never
carries a request for another, and a job's images, and the next job's, skip the TCP and TLS
handshakes. Bodies are spooled to a temporary file past a few MiB, so a 50 MB image never sits
in memory whole.
"""

import asyncio
import hashlib
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin

import httpx

from worker.landing.errors import PermanentError, TransientError
from worker.landing.hosts import HostPolicy

MAX_REDIRECTS = 3
SPOOL_IN_MEMORY = 8 * 1024 * 1024
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
BRANDS = {b"qt  ": ("video/quicktime", "mov"), b"M4A ": ("audio/mp4", "m4a")}  # else an mp4
MEDIA = {"image": "an image", "video": "a video", "audio": "audio"}


@dataclass
class Download:
    """A fetched image in a temporary file; close it when done."""

    file: IO[bytes]
    size: int
    sha256: str
    md5: str
    content_type: str
    extension: str
    source_url: str

    def close(self) -> None:
        self.file.close()


def sniff(head: bytes) -> tuple[str, str] | None:
    """The content type and extension the first bytes announce, never the URL or the header."""
    if head[:4] == b"RIFF":
        return RIFF.get(head[8:12])
    if head[4:8] == b"ftyp":  # ISO base media: the brand tells QuickTime and audio from mp4
        return BRANDS.get(head[8:12], ("video/mp4", "mp4"))
    for prefix, content_type, extension in SIGNATURES:
        if head.startswith(prefix):
            return content_type, extension
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame
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

    async def fetch(self, url: str, medium: str = "image") -> Download:
        """Stream `url`, a file of `medium`, into a temporary file, following at most a few
        checked redirects."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            target = await self._policy.check(current)
            pinned = httpx.URL(current).copy_with(host=str(target.address))
            # The host's own pool, whose connections were all made for this name, or a
            # connection closed after this request: one made for another name on the same
            # address must never carry it.
            client, pooled = self._hosts.for_host(target.host)
            headers = {"Host": httpx.URL(current).netloc.decode(), **IDENTITY}
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
                    return await self._receive(url, medium, response)
            except httpx.TransportError as exc:
                raise TransientError(f"download of {url} broke off: {exc!r}") from exc
        raise PermanentError(f"download of {url} redirected more than {MAX_REDIRECTS} times")

    async def _receive(self, url: str, medium: str, response: httpx.Response) -> Download:
        status = response.status_code
        if status in PERMANENT_STATUSES:
            expired = " (the file has probably expired)" if status in (403, 404, 410) else ""
            raise PermanentError(f"the CDN answered {status} for {url}{expired}")
        if status == 429 or status >= 500:
            raise TransientError(f"the CDN answered {status} for {url}")
        if status != 200:
            raise PermanentError(f"the CDN answered an unexpected {status} for {url}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            # Decoding would let a few compressed bytes grow past any cap in memory.
            raise PermanentError(f"{url} came with Content-Encoding {encoding!r}, not identity")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._caps[medium]:
            raise PermanentError(self._too_big(url, medium, int(declared)))
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        try:
            return await self._spool(url, medium, response, spool)
        except BaseException:
            spool.close()
            raise

    async def _spool(
        self, url: str, medium: str, response: httpx.Response, spool: IO[bytes]
    ) -> Download:
        sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        size, head, cap = 0, b"", self._caps[medium]
        async for chunk in response.aiter_raw():  # the bytes as they arrive, never decoded
            size += len(chunk)
            if size > cap:
                raise PermanentError(self._too_big(url, medium, size))
            if len(head) < 16:
                head += chunk[:16]
                if len(head) >= 12:
                    self._check_type(url, medium, head)
            sha256.update(chunk)
            md5.update(chunk)
            spool.write(chunk)
        found = self._check_type(url, medium, head)
        spool.seek(0)
        return Download(spool, size, sha256.hexdigest(), md5.hexdigest(), *found, url)

    @staticmethod
    def _check_type(url: str, medium: str, head: bytes) -> tuple[str, str]:
        found = sniff(head)
        if found is None or medium_of(found[0]) != medium:
            what = f"a {found[0]} file" if found else f"a file starting {head[:12]!r}"
            raise PermanentError(f"{url} is not {MEDIA[medium]}: the CDN sent {what}")
        return found

    def _too_big(self, url: str, medium: str, size: int) -> str:
        setting = f"IMAGEDOCK_MAX_{medium.upper()}_BYTES"
        return f"{url} is over the {self._caps[medium]}-byte cap ({setting}): {size}"
