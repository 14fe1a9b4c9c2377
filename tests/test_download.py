"""Download safety: allowed hosts only, no private addresses by pattern, redirects re-checked,
and a byte cap that holds whatever length the origin declares, or none."""

import gzip
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from imagedock.clients import http_client
from simulator.serving import serving
from worker.deps import Deps
from worker.landing.download import Downloader, HostClients, resumed_at, sniff
from worker.landing.errors import PermanentError
from worker.landing.hosts import HostPolicy, is_public

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
CAP = 1024
CAPS = {"image": CAP, "video": CAP, "audio": CAP}
OVER_CAP = b"\x89PNG\r\n\x1a\n" + b"\0" * (4 * CAP)


@dataclass
class Origin:
    url: str
    requested: list[str] = field(default_factory=list)  # paths of /image.png asked for
    hosts: list[str] = field(default_factory=list)  # the Host headers /image.png was sent
    accept_encoding: list[str] = field(default_factory=list)  # what the encoded routes were sent
    peers: list[int] = field(default_factory=list)  # the client port each /image.png came from


@pytest.fixture
async def origin_server() -> AsyncIterator[Origin]:
    seen = Origin("")

    async def image(request: Request) -> Response:
        seen.requested.append(request.url.path)
        seen.hosts.append(request.headers["host"])
        assert request.client is not None
        seen.peers.append(request.client.port)
        return Response(PNG, media_type="image/png")

    async def hop(request: Request) -> Response:
        return RedirectResponse(request.query_params["to"], status_code=302)

    async def chunked(request: Request) -> Response:
        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(OVER_CAP), 256):
                yield OVER_CAP[start : start + 256]

        return StreamingResponse(pieces(), media_type="image/png")  # no Content-Length

    async def gzipped(request: Request) -> Response:
        # Content-Length counts the compressed bytes: far under the cap, decoded far over it.
        seen.accept_encoding.append(request.headers.get("accept-encoding", ""))
        body = gzip.compress(OVER_CAP)
        assert len(body) < CAP
        return Response(body, media_type="image/png", headers={"Content-Encoding": "gzip"})

    async def bomb(request: Request) -> Response:
        seen.accept_encoding.append(request.headers.get("accept-encoding", ""))
        body = gzip.compress(gzip.compress(b"\0" * 64 * 1024 * 1024))
        return Response(body, media_type="image/png", headers={"Content-Encoding": "gzip, gzip"})

    routes = [Route("/image.png", image), Route("/hop", hop), Route("/chunked.png", chunked)]
    routes += [Route("/gzip.png", gzipped), Route("/bomb.png", bomb)]
    async with serving(Starlette(routes=routes)) as url:
        seen.url = url
        yield seen


@pytest.fixture
def origin(origin_server: Origin) -> str:
    return origin_server.url


class Kept:
    """A destination that keeps what it is given."""

    def __init__(self) -> None:
        self.begun: tuple[str, str, int | None] | None = None
        self.body = bytearray()

    async def begin(self, content_type: str, extension: str, size: int | None) -> None:
        self.begun = (content_type, extension, size)

    async def write(self, chunk: bytes) -> None:
        assert self.begun is not None, "written before it was begun"
        self.body += chunk


async def fetch(deps: Deps, url: str, allowed: list[str]) -> bytes:
    """Fetch through the download client `open_deps` makes, as a worker does."""
    kept = Kept()
    download = await Downloader(deps.hosts, HostPolicy(allowed), CAPS).fetch(url, "image", kept)
    assert download.size == len(kept.body)
    return bytes(kept.body)


async def test_an_exactly_named_host_may_be_loopback(origin: str, deps: Deps) -> None:
    """A host named exactly in the allow-list is fetched even on a loopback address."""
    assert await fetch(deps, f"{origin}/image.png", ["127.0.0.1"]) == PNG


async def test_a_pattern_never_admits_a_private_address(origin: str, deps: Deps) -> None:
    """`localhost` matches the pattern `local*`, but resolves to loopback: refused."""
    url = origin.replace("127.0.0.1", "localhost") + "/image.png"
    with pytest.raises(PermanentError, match="non-public address"):
        await fetch(deps, url, ["local*"])


async def test_each_redirect_hop_is_checked(origin: str, deps: Deps) -> None:
    """A redirect to a host outside the allow-list is refused before it is fetched."""
    target = origin.replace("127.0.0.1", "localhost") + "/image.png"
    with pytest.raises(PermanentError, match="refused result host 'localhost'"):
        await fetch(deps, f"{origin}/hop?to={target}", ["127.0.0.1"])
    assert await fetch(deps, f"{origin}/hop?to={origin}/image.png", ["127.0.0.1"]) == PNG


async def test_a_host_outside_the_allow_list_is_never_asked(
    origin_server: Origin, deps: Deps
) -> None:
    """`localhost` is not `127.0.0.1`: refused by the allow-list, with no request made."""
    url = origin_server.url.replace("127.0.0.1", "localhost") + "/image.png"
    with pytest.raises(PermanentError, match="'localhost': not in IMAGEDOCK_DOWNLOAD_HOSTS"):
        await fetch(deps, url, ["127.0.0.1"])
    assert origin_server.requested == []


async def test_the_cap_holds_without_a_length(origin: str, deps: Deps) -> None:
    """A body with no Content-Length is cut off at the cap as it streams."""
    with pytest.raises(PermanentError, match=f"over the {CAP}-byte cap"):
        await fetch(deps, origin + "/chunked.png", ["127.0.0.1"])


@pytest.mark.parametrize("path", ["/gzip.png", "/bomb.png"])
async def test_encoded_bodies_are_refused_undecoded(
    origin_server: Origin, deps: Deps, path: str
) -> None:
    """imagedock asks for identity and refuses any encoding before it decodes a byte: a few
    compressed bytes cannot grow past the cap in memory."""
    with pytest.raises(PermanentError, match=r"Content-Encoding 'gzip.*', not identity"):
        await fetch(deps, origin_server.url + path, ["127.0.0.1"])
    assert origin_server.accept_encoding == ["identity"]


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "2002:7f00:1::",
        "2002:c0a8:101::",
        "fe80::1",
        "169.254.169.254",
    ],
)
def test_ipv6_forms_of_private_addresses_are_not_public(address: str) -> None:
    """An IPv6 address that carries a private IPv4 one is as private as that one."""
    assert not is_public(ipaddress.ip_address(address))


def test_public_addresses_are_public() -> None:
    assert all(is_public(ipaddress.ip_address(a)) for a in ("93.184.215.14", "2606:4700::1111"))


async def test_the_checked_address_is_the_one_connected_to(
    origin_server: Origin, deps: Deps
) -> None:
    """A host named exactly is resolved once; the request goes to that address and still
    names the host, as Host and for TLS."""
    url = origin_server.url.replace("127.0.0.1", "localhost") + "/image.png"
    assert await fetch(deps, url, ["localhost"]) == PNG
    port = origin_server.url.rsplit(":", 1)[1]
    assert origin_server.hosts == [f"localhost:{port}"]
    target = await HostPolicy(["localhost"]).check(url)
    assert (target.host, target.address.is_loopback) == ("localhost", True)


async def test_connections_are_reused_for_one_name_and_never_across_names(
    origin_server: Origin, deps: Deps
) -> None:
    """Two names on one address: each name's downloads share a connection; no connection made
    for one name ever carries a request for the other."""
    by_address = origin_server.url + "/image.png"
    by_name = by_address.replace("127.0.0.1", "localhost")
    allowed = ["localhost", "127.0.0.1"]
    for url in (by_name, by_address, by_name, by_address):
        assert await fetch(deps, url, allowed) == PNG
    first, second, third, fourth = origin_server.peers
    assert first == third
    assert second == fourth
    assert first != second


async def test_past_the_pooled_names_each_download_has_its_own_connection(
    origin_server: Origin, deps: Deps
) -> None:
    policy = HostPolicy(["127.0.0.1"])
    hosts = HostClients(http_client, most=0)
    downloader = Downloader(hosts, policy, CAPS)
    try:
        for _ in range(2):
            await downloader.fetch(origin_server.url + "/image.png", "image", Kept())
    finally:
        await hosts.aclose()
    assert len(set(origin_server.peers)) == 2


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x.png", "file:///etc/passwd", "http:///x"])
async def test_only_http_urls(url: str, deps: Deps) -> None:
    """Schemes other than http(s), or URLs with no host, are refused."""
    with pytest.raises(PermanentError):
        await fetch(deps, url, ["*"])


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n....", ("image/png", "png")),
        (b"\xff\xd8\xff\xe0....", ("image/jpeg", "jpg")),
        (b"RIFF\x10\0\0\0WEBPVP8 ", ("image/webp", "webp")),
        (b"GIF89a......", ("image/gif", "gif")),
        (b"<html><body>", None),
        (b"RIFF\x10\0\0\0AVI LIST", None),
        (b"RIFF\x10\0\0\0WAVEfmt ", ("audio/wav", "wav")),
        (b"\0\0\0\x20ftypisom\0\0", ("video/mp4", "mp4")),
        (b"\0\0\0\x14ftypqt  \0\0", ("video/quicktime", "mov")),
        (b"\0\0\0\x20ftypM4A \0\0", ("audio/mp4", "m4a")),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", ("video/webm", "webm")),
        (b"ID3\x04\0\0\0\0\0\x23", ("audio/mpeg", "mp3")),
        (b"\xff\xfb\x90\x64\0\0\0\0", ("audio/mpeg", "mp3")),
        (b"OggS\0\x02\0\0\0\0", ("audio/ogg", "ogg")),
        (b"\0\0\0\x1cftypavif\0\0", ("image/avif", "avif")),
        (b"%PDFftyp1.7 \0\0\0\0", None),  # a brand of no known medium
        (b"\xff\xfeh\0e\0l\0l\0", None),  # UTF-16 text: a sync word, no valid frame
        (b"\xff\xf1\x50\x80\x02\x1f", ("audio/aac", "aac")),
    ],
)
def test_types_come_from_magic_bytes(head: bytes, kind: tuple[str, str] | None) -> None:
    """The type is read from the first bytes, never from the URL or a header."""
    assert sniff(head) == kind


def test_a_generic_iso_file_is_what_the_job_promised() -> None:
    """An ISO media file of a generic brand is a track where audio was promised, else a video;
    a brand that names its medium says it whatever was promised."""
    generic, audio = b"\0\0\0\x20ftypisom\0\0", b"\0\0\0\x20ftypM4A \0\0"
    assert sniff(generic, "audio") == ("audio/mp4", "m4a")
    assert sniff(generic, "video") == ("video/mp4", "mp4")
    assert sniff(audio, "video") == ("audio/mp4", "m4a")


def test_a_resumed_answer_must_be_the_whole_rest_of_the_same_length() -> None:
    """A 206 resumes a download only if it runs from where it broke to the end of a file of
    the length first declared."""

    def answer(status: int, content_range: str) -> httpx.Response:
        return httpx.Response(status, headers={"Content-Range": content_range})

    assert resumed_at(answer(206, "bytes 100-999/1000"), 100, 1000)
    assert not resumed_at(answer(206, "bytes 100-199/1000"), 100, 1000)  # cut short
    assert not resumed_at(answer(206, "bytes 100-1099/1100"), 100, 1000)  # another file
    assert not resumed_at(answer(206, "bytes 99-999/1000"), 100, 1000)
    assert not resumed_at(answer(200, "bytes 100-999/1000"), 100, 1000)
    assert not resumed_at(answer(206, "bytes 100-999/*"), 100, 1000)
