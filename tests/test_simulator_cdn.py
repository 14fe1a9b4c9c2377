"""The simulator's CDN: real images in three formats, any size, expiry and download faults."""

import asyncio
import hashlib
import io

import httpx
import pytest
from PIL import Image

from tests.support.stack import Apiframe
from worker.apiframe.models import MODEL as GROK

GENERATE = "/v2/images/generate"
MAGIC = {"png": b"\x89PNG", "jpeg": b"\xff\xd8\xff", "webp": b"RIFF"}


async def completed_urls(apiframe: Apiframe, http: httpx.AsyncClient, **params: str) -> list[str]:
    body = {
        "model": GROK,
        "prompt": "a lighthouse",
        **({"grokImagineParams": params} if params else {}),
    }
    job_id = (await http.post(apiframe.url + GENERATE, json=body)).json()["jobId"]
    await apiframe.sim.settle()
    return apiframe.sim.jobs[job_id].image_urls


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("ratio", ["1:1", "16:9", "2:3"])
async def test_images_decode_at_the_requested_aspect_ratio(
    apiframe: Apiframe, http: httpx.AsyncClient, fmt: str, ratio: str
) -> None:
    """Each format is a real image of the requested shape, served with its content type."""
    apiframe.sim.config.image_format = fmt  # type: ignore[assignment]
    [url] = await completed_urls(apiframe, http, aspect_ratio=ratio)
    response = await http.get(url)
    assert response.headers["content-type"] == f"image/{fmt}"
    assert response.content.startswith(MAGIC[fmt])
    width, height = Image.open(io.BytesIO(response.content)).size
    across, down = map(int, ratio.split(":"))
    assert abs(width / height - across / down) < 0.02


async def test_content_follows_the_prompt(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """The same prompt draws the same picture; another prompt draws another."""
    bodies = []
    for prompt in ("a fox", "a fox", "a heron"):
        job_id = (
            await http.post(apiframe.url + GENERATE, json={"model": GROK, "prompt": prompt})
        ).json()["jobId"]
        await apiframe.sim.settle()
        pixels = (await http.get(apiframe.sim.jobs[job_id].image_urls[0])).content
        bodies.append(Image.open(io.BytesIO(pixels)).tobytes())
    assert bodies[0] == bodies[1] != bodies[2]


@pytest.mark.parametrize("count", [1, 2, 3, 4])
async def test_one_to_four_images_per_job(
    apiframe: Apiframe, http: httpx.AsyncClient, count: int
) -> None:
    """`images_per_job` sets how many distinct files a job returns."""
    apiframe.sim.config.images_per_job = count
    urls = await completed_urls(apiframe, http)
    assert len(urls) == count
    digests = {hashlib.sha256((await http.get(url)).content).hexdigest() for url in urls}
    assert len(digests) == count


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
async def test_padded_files_stay_valid_images(
    apiframe: Apiframe, http: httpx.AsyncClient, fmt: str
) -> None:
    """A file padded to about 1 MB still decodes, and matches what the simulator says it serves."""
    apiframe.sim.config.image_format = fmt  # type: ignore[assignment]
    apiframe.sim.config.image_bytes = 1_000_000
    [url] = await completed_urls(apiframe, http)
    body = (await http.get(url)).content
    assert 990_000 <= len(body) <= 1_010_000
    assert len(body) == apiframe.sim.image(url).size
    assert hashlib.sha256(body).hexdigest() == apiframe.sim.image(url).sha256()
    Image.open(io.BytesIO(body)).load()


async def test_serves_sixty_megabytes_as_a_stream(
    apiframe: Apiframe, http: httpx.AsyncClient
) -> None:
    """A 60 MB file streams whole, byte for byte as the simulator describes it."""
    apiframe.sim.config.image_bytes = 60_000_000
    [url] = await completed_urls(apiframe, http)
    digest, total = hashlib.sha256(), 0
    async with http.stream("GET", url) as response:
        assert int(response.headers["content-length"]) >= 60_000_000
        async for chunk in response.aiter_bytes():
            digest.update(chunk)
            total += len(chunk)
    assert total == apiframe.sim.image(url).size
    assert digest.hexdigest() == apiframe.sim.image(url).sha256()


async def test_files_expire_after_their_ttl(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """Past the TTL the CDN answers 404 and the job says `expired: true`."""
    [url] = await completed_urls(apiframe, http)
    job_id = next(iter(apiframe.sim.jobs))
    assert (await http.get(url)).status_code == 200
    apiframe.sim.config.file_ttl_seconds = 0.05
    await asyncio.sleep(0.1)
    gone = await http.get(url)
    job = (await http.get(f"{apiframe.url}/v2/jobs/{job_id}")).json()
    assert gone.status_code == 404
    assert gone.json() == {"error": "File expired"}
    assert job["expired"] is True


async def test_first_tries_can_fail_with_503(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """`cdn_fail_first=2` answers 503 twice per file, then the image."""
    apiframe.sim.config.cdn_fail_first = 2
    [url] = await completed_urls(apiframe, http)
    statuses = [(await http.get(url)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


async def test_slow_bodies_arrive_whole(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """A slowed body still arrives complete."""
    apiframe.sim.config.image_bytes = 300_000
    apiframe.sim.config.cdn_chunk_delay = 0.01
    [url] = await completed_urls(apiframe, http)
    body = (await http.get(url)).content
    assert hashlib.sha256(body).hexdigest() == apiframe.sim.image(url).sha256()


async def test_truncated_bodies_break_the_download(
    apiframe: Apiframe, http: httpx.AsyncClient
) -> None:
    """A truncated body ends before its declared length, and the client sees the break."""
    apiframe.sim.config.image_bytes = 400_000
    apiframe.sim.config.cdn_truncate = True
    [url] = await completed_urls(apiframe, http)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(url)


async def test_non_image_content(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """`cdn_content="html"` serves a web page where the image should be."""
    apiframe.sim.config.cdn_content = "html"
    [url] = await completed_urls(apiframe, http)
    response = await http.get(url)
    assert response.headers["content-type"].startswith("text/html")
    assert response.content.startswith(b"<html>")


async def test_unknown_files_are_404(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """A file name the simulator never served is a 404."""
    response = await http.get(
        f"{apiframe.url}/cdn/images/00000000-0000-0000-0000-000000000000-1.png"
    )
    assert response.status_code == 404
