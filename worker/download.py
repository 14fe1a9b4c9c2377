"""Fetching result images safely: allowed hosts only, no private addresses, re-checked redirects,
a byte cap, a SHA-256 computed while streaming, and the type read from the magic bytes.

Bodies are spooled to a temporary file past a few MiB, so a 50 MB image never sits in memory whole.
"""

import asyncio
import fnmatch
import hashlib
import ipaddress
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin, urlsplit

import httpx

from worker.errors import PermanentError, TransientError

MAX_REDIRECTS = 3
SPOOL_IN_MEMORY = 8 * 1024 * 1024
PERMANENT_STATUSES = {400, 401, 403, 404, 410, 451}
IMAGE_TYPES = (  # (prefix, content type, extension); WebP is checked on its own
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
)


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
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "webp"
    for prefix, content_type, extension in IMAGE_TYPES:
        if head.startswith(prefix):
            return content_type, extension
    return None


class HostPolicy:
    """Which result hosts may be fetched. A pattern like `*.apiframe.ai` admits public
    addresses only; a host named exactly is trusted even on a private or loopback address."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.allowed = [pattern.lower() for pattern in allowed]

    async def check(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise PermanentError(f"refused result URL {url!r}: not an http(s) URL")
        named = host in self.allowed
        if not named and not any(fnmatch.fnmatchcase(host, p) for p in self.allowed):
            raise PermanentError(f"refused result host {host!r}: not in IMAGEDOCK_DOWNLOAD_HOSTS")
        if named:
            return
        for address in await resolve(host, parts.port or 443):
            if not address.is_global:
                raise PermanentError(
                    f"refused result host {host!r}: it resolves to the non-public address "
                    f"{address}; name it exactly in IMAGEDOCK_DOWNLOAD_HOSTS to allow it"
                )


async def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve result host {host!r}: {exc}") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]


class Downloader:
    def __init__(self, http: httpx.AsyncClient, policy: HostPolicy, max_bytes: int) -> None:
        self._http = http
        self._policy = policy
        self._max_bytes = max_bytes

    async def fetch(self, url: str) -> Download:
        """Stream `url` into a temporary file, following at most a few checked redirects."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            await self._policy.check(current)
            try:
                async with self._http.stream("GET", current) as response:
                    if response.is_redirect and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    return await self._receive(url, response)
            except httpx.TransportError as exc:
                raise TransientError(f"download of {url} broke off: {exc!r}") from exc
        raise PermanentError(f"download of {url} redirected more than {MAX_REDIRECTS} times")

    async def _receive(self, url: str, response: httpx.Response) -> Download:
        status = response.status_code
        if status in PERMANENT_STATUSES:
            expired = " (the file has probably expired)" if status in (403, 404, 410) else ""
            raise PermanentError(f"the CDN answered {status} for {url}{expired}")
        if status == 429 or status >= 500:
            raise TransientError(f"the CDN answered {status} for {url}")
        if status != 200:
            raise PermanentError(f"the CDN answered an unexpected {status} for {url}")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_bytes:
            raise PermanentError(self._too_big(url, int(declared)))
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        try:
            return await self._spool(url, response, spool)
        except BaseException:
            spool.close()
            raise

    async def _spool(self, url: str, response: httpx.Response, spool: IO[bytes]) -> Download:
        sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        size, head = 0, b""
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise PermanentError(self._too_big(url, size))
            if len(head) < 16:
                head += chunk[:16]
                if len(head) >= 12 and sniff(head) is None:
                    raise PermanentError(f"{url} is not an image (it starts with {head[:12]!r})")
            sha256.update(chunk)
            md5.update(chunk)
            spool.write(chunk)
        kind = sniff(head)
        if kind is None:
            raise PermanentError(f"{url} is not an image ({size} bytes)")
        spool.seek(0)
        return Download(spool, size, sha256.hexdigest(), md5.hexdigest(), *kind, url)

    def _too_big(self, url: str, size: int) -> str:
        return f"{url} is over the {self._max_bytes}-byte cap (IMAGEDOCK_MAX_IMAGE_BYTES): {size}"
