"""Download safety: allowed hosts only, no private addresses by pattern, redirects re-checked."""

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from simulator.serving import serving
from worker.download import Downloader, HostPolicy, sniff
from worker.errors import PermanentError

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    async def image(request: Request) -> Response:
        return Response(PNG, media_type="image/png")

    async def hop(request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=302)

    app = Starlette(routes=[Route("/image.png", image), Route("/hop", hop)])
    async with serving(app) as url:
        yield url


async def fetch(url: str, allowed: list[str]) -> bytes:
    async with httpx.AsyncClient() as http:
        download = await Downloader(http, HostPolicy(allowed), 1024).fetch(url)
        try:
            return download.file.read()
        finally:
            download.close()


async def test_an_exactly_named_host_may_be_loopback(origin: str) -> None:
    """A host named exactly in the allow-list is fetched even on a loopback address."""
    assert await fetch(f"{origin}/image.png", ["127.0.0.1"]) == PNG


async def test_a_pattern_never_admits_a_private_address(origin: str) -> None:
    """`localhost` matches the pattern `local*`, but resolves to loopback: refused."""
    url = origin.replace("127.0.0.1", "localhost") + "/image.png"
    with pytest.raises(PermanentError, match="non-public address"):
        await fetch(url, ["local*"])


async def test_each_redirect_hop_is_checked(origin: str) -> None:
    """A redirect to a host outside the allow-list is refused before it is fetched."""
    target = origin.replace("127.0.0.1", "localhost") + "/image.png"
    with pytest.raises(PermanentError, match="refused result host 'localhost'"):
        await fetch(f"{origin}/hop?to={target}", ["127.0.0.1"])
    assert await fetch(f"{origin}/hop?to={origin}/image.png", ["127.0.0.1"]) == PNG


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x.png", "file:///etc/passwd", "http:///x"])
async def test_only_http_urls(url: str) -> None:
    """Schemes other than http(s), or URLs with no host, are refused."""
    with pytest.raises(PermanentError):
        await fetch(url, ["*"])


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n....", ("image/png", "png")),
        (b"\xff\xd8\xff\xe0....", ("image/jpeg", "jpg")),
        (b"RIFF\x10\0\0\0WEBPVP8 ", ("image/webp", "webp")),
        (b"GIF89a......", ("image/gif", "gif")),
        (b"<html><body>", None),
        (b"RIFF\x10\0\0\0WAVEfmt ", None),
    ],
)
def test_types_come_from_magic_bytes(head: bytes, kind: tuple[str, str] | None) -> None:
    """The type is read from the first bytes, never from the URL or a header."""
    assert sniff(head) == kind
