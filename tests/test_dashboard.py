"""The dashboard at `/`, driven in a real headless Chromium (Debian's, never a downloaded one)
against the whole stack: the page follows the job log, so nothing here reloads it."""

import asyncio
import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    Request,
    async_playwright,
    expect,
)

from tests.support.stack import API_TOKEN, CALLER_KEYS, Stack

CHROMIUM = "/usr/bin/chromium"
MARKUP = 'a lighthouse at <b>dusk</b><img src="/nowhere" onerror="document.title = 1">'
SCREENSHOT = Path(__file__).parent.parent / "docs" / "dashboard.png"

# Landing runs a worker and the browser shares two cores with it: allow more than the default 5 s.
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


@dataclass
class Dashboard:
    """The page, with what it said on its console and every request it made."""

    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def crashed(self, error: Error) -> None:
        self.errors.append(str(error))

    def requested(self, request: Request) -> None:
        self.requests.append(request)

    async def log_in(self, token: str = API_TOKEN) -> None:
        await self.page.fill("#token", token)
        await self.page.click("#login button[type=submit]")

    async def live(self) -> Page:
        """Logged in and following the log."""
        await self.log_in()
        await expect(self.page.locator("#live")).to_have_text("live")
        return self.page

    def row(self, ref: str) -> Locator:
        return self.page.locator(f'#jobs tr[data-ref="{ref}"]')

    def stat(self, name: str) -> Locator:
        return self.page.locator(f'[data-stat="{name}"]')

    def assert_quiet(self, stack: Stack) -> None:
        """No console error, no uncaught exception, no host but the receiver and S3."""
        assert self.errors == []
        allowed = {urlsplit(stack.receiver_url).netloc, urlsplit(s3_endpoint(stack)).netloc}
        assert {urlsplit(url).netloc for url in self.urls()} <= allowed
        assert not [url for url in self.urls() if API_TOKEN in url]

    def urls(self) -> list[str]:
        return [request.url for request in self.requests]


def s3_endpoint(stack: Stack) -> str:
    endpoint = stack.settings.s3_endpoint_url
    assert endpoint is not None
    return endpoint


@dataclass
class Relay:
    """A TCP relay in front of the receiver; `cut()` drops every connection through it at once,
    as a proxy restarting would."""

    url: str = ""
    connections: set[asyncio.StreamWriter] = field(default_factory=set)

    def cut(self) -> None:
        for writer in self.connections:
            writer.transport.abort()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def relayed(target: str) -> AsyncIterator[Relay]:
    address, relay = urlsplit(target), Relay()

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            address.hostname, address.port
        )
        relay.connections |= {writer, upstream_writer}
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        relay.connections -= {writer, upstream_writer}

    server = await asyncio.start_server(connect, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    relay.url = f"http://{host}:{port}"
    async with server:
        yield relay
        relay.cut()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    # Per test: the stack, and so its event loop, is per test too.
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        await browser.close()


@pytest.fixture
async def dashboard(browser: Browser, stack: Stack) -> AsyncIterator[Dashboard]:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    watched = Dashboard(page)
    page.on("console", watched.console)
    page.on("pageerror", watched.crashed)
    page.on("request", watched.requested)
    await page.goto(stack.receiver_url)
    yield watched
    await page.close()


async def loaded(page: Page, images: Locator) -> None:
    """Until every image is decoded with a width: fetched, and a picture."""
    await page.wait_for_function(
        "images => images.every((image) => image.complete && image.naturalWidth > 0)",
        arg=await images.element_handles(),
        timeout=WAIT_MS,
    )


async def test_the_page_allows_only_its_own_code(stack: Stack) -> None:
    """`/` is sent with a policy that runs only the receiver's own script and style, and is never
    cached; its assets need no token."""
    page = await stack.api.get("/", headers={"Authorization": ""})
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    script = await stack.api.get("/static/dashboard.js", headers={"Authorization": ""})
    assert script.status_code == 200


async def test_the_token_is_asked_for_and_kept_out_of_the_url(
    stack: Stack, dashboard: Dashboard
) -> None:
    """The page shows only a login form until a right token, refusing a wrong one, and keeps the
    token in sessionStorage, never in a URL, until logging out."""
    page = dashboard.page
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#dashboard")).to_be_hidden()

    await dashboard.log_in("not-the-token")
    await expect(page.locator("#login-error")).to_have_text("wrong token")
    await expect(page.locator("#dashboard")).to_be_hidden()

    await dashboard.log_in()
    await expect(page.locator("#jobs")).to_be_visible()
    await expect(dashboard.stat("submitted")).to_have_text("0")
    await expect(page.locator("#login")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('imagedock.token')") == API_TOKEN
    assert API_TOKEN not in page.url

    await page.reload()
    await expect(page.locator("#jobs")).to_be_visible()
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#dashboard")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    assert not [url for url in dashboard.urls() if API_TOKEN in url]
    [refused] = dashboard.errors  # Chromium's own line for the wrong token's 401, nothing else
    assert "401" in refused


async def test_a_job_from_v2_and_one_from_jobs_land_side_by_side(
    stack: Stack, dashboard: Dashboard
) -> None:
    """A job an Apiframe client submits through `/v2/` and one submitted through `/jobs` show in
    the same table, each with who submitted it, and both land through the same pipeline."""
    page = await dashboard.live()
    own = (await stack.submit("through imagedock's API"))["ref"]
    async with httpx.AsyncClient(
        base_url=stack.receiver_url, headers={"X-API-Key": CALLER_KEYS["alpha"]}
    ) as alpha:
        answer = await alpha.post(
            "/v2/images/generate",
            json={"model": "grok-imagine-image", "prompt": "through Apiframe's"},
        )
    apiframes = uuid.UUID(answer.json()["jobId"]).hex
    await stack.run_worker()
    for ref, caller in ((own, "operator"), (apiframes, "alpha")):
        row = dashboard.row(ref)
        await expect(row).to_have_attribute("data-status", "LANDED")
        await expect(row.locator(".caller")).to_have_text(caller)
        await expect(row.locator("img.thumb")).to_have_count(1)
    assert await page.locator("#jobs tbody tr").count() == 2
    dashboard.assert_quiet(stack)


async def test_a_job_appears_and_lands_without_a_reload(stack: Stack, dashboard: Dashboard) -> None:
    """A job submitted while the page is open appears in the table, its prompt shown as text, then
    turns LANDED with its thumbnail loaded from S3, all in the same document; the console stays
    clean."""
    page = await dashboard.live()
    await page.evaluate("window.sameDocument = true")

    ref = (await stack.submit(MARKUP))["ref"]
    row = dashboard.row(ref)
    await expect(row).to_be_visible()
    await expect(row).not_to_have_attribute("data-status", "LANDED")
    await expect(row.locator(".prompt")).to_have_text(MARKUP)
    await expect(row.locator(".prompt *")).to_have_count(0)
    await expect(row.locator(".age")).to_have_text(re.compile(r"^\d+ s ago$"))

    await stack.run_worker()
    await expect(row).to_have_attribute("data-status", "LANDED")
    await expect(row.locator(".status")).to_have_text("LANDED")
    await expect(row.locator("img.thumb")).to_have_count(1)
    await loaded(page, row.locator("img.thumb"))
    await expect(dashboard.stat("landed")).to_have_text("1")

    assert await page.evaluate("window.sameDocument") is True
    assert any(url.startswith(s3_endpoint(stack)) for url in dashboard.urls())
    dashboard.assert_quiet(stack)


async def test_the_stream_resumes_after_a_drop(stack: Stack, dashboard: Dashboard) -> None:
    """When the connection under the log stream drops, the page reconnects with the last entry's
    id as Last-Event-ID and catches up with what happened meanwhile."""
    page = dashboard.page
    async with relayed(stack.receiver_url) as relay:
        await page.goto(relay.url)
        await dashboard.live()
        before = (await stack.submit("before the drop"))["ref"]
        await expect(dashboard.row(before)).to_be_visible()

        relay.cut()
        await expect(page.locator("#live")).not_to_have_text("live")
        during = (await stack.submit("during the drop"))["ref"]
        await stack.run_worker()

        await expect(dashboard.row(during)).to_have_attribute("data-status", "LANDED")
        await expect(dashboard.row(before)).to_have_attribute("data-status", "LANDED")
        await expect(page.locator("#live")).to_have_text("live")
    streams = [request for request in dashboard.requests if urlsplit(request.url).path == "/log"]
    seen = [
        entry.id for entry in await stack.ledger.history.after(count=1000) if entry.ref == before
    ]
    assert streams[-1].headers["last-event-id"] in seen
    # Chromium's own line for the cut stream, if any; nothing from the page.
    assert all(error.startswith("Failed to load resource: net::") for error in dashboard.errors)


async def test_a_failed_job_shows_its_reason(stack: Stack, dashboard: Dashboard) -> None:
    """A job Apiframe fails turns FAILED with Apiframe's reason in its row, and counts as failed."""
    stack.sim.config.failure_rate = 1.0
    await dashboard.live()
    ref = (await stack.submit())["ref"]
    await stack.run_worker()
    row = dashboard.row(ref)
    await expect(row).to_have_attribute("data-status", "FAILED")
    await expect(row.locator(".reason")).to_have_text(stack.sim.config.failure_message)
    await expect(row.locator("img.thumb")).to_have_count(0)
    await expect(dashboard.stat("failed")).to_have_text("1")
    dashboard.assert_quiet(stack)


async def test_clicking_a_row_shows_its_timeline(stack: Stack, dashboard: Dashboard) -> None:
    """A click on a job's row lists its log entries beside the table, `job.created` first."""
    ref = (await stack.submit())["ref"]
    await stack.run_worker()
    page = await dashboard.live()

    await dashboard.row(ref).click()
    timeline = page.locator("#timeline")
    await expect(timeline.locator("#timeline-ref")).to_have_text(ref)
    await expect(timeline.locator("tbody tr").first).to_have_attribute("data-event", "job.created")
    changes = timeline.locator('tr[data-event="status.changed"]')
    await expect(changes.last).to_contain_text("to=LANDED")
    await expect(timeline.locator('tr[data-event="job.landed"]')).to_have_count(1)
    dashboard.assert_quiet(stack)


async def test_a_dead_letter_can_be_redriven(stack: Stack, dashboard: Dashboard) -> None:
    """An event its endpoint never took is counted as a dead letter, and Redrive sends it again."""
    stack.events.statuses = [503] * 5
    await stack.submit()
    await stack.run_worker()
    page = await dashboard.live()
    await expect(dashboard.stat("deadLetters")).to_have_text("1")

    async with page.expect_response("**/events/redrive") as answered:
        await page.click("#redrive")
    answer = await answered.value
    assert (answer.status, await answer.json()) == (202, {"redriven": 1})
    await expect(dashboard.stat("deadLetters")).to_have_text("0")
    await expect(page.locator("#redrive")).to_be_disabled()
    dashboard.assert_quiet(stack)


PROMPTS: list[tuple[str, dict[str, Any]]] = [
    ("a red kite over dunes", {}),
    ("a tin robot reading under a lamp", {"model": "flux-2-pro", "fluxParams": {}}),
    ("a lighthouse at dusk, oil on canvas", {}),
]


async def test_the_counters_add_up_a_busy_page(stack: Stack, dashboard: Dashboard) -> None:
    """After three jobs land and one fails, the counters and rows say so; with
    IMAGEDOCK_SCREENSHOT=1 the page is saved as docs/dashboard.png."""
    stack.sim.config.images_per_job = 2
    page = await dashboard.live()
    refs = [(await stack.submit(prompt, **body))["ref"] for prompt, body in PROMPTS]
    await stack.run_worker()
    stack.sim.config.failure_rate = 1.0
    failed = (await stack.submit("a portrait of a real, named person"))["ref"]
    await stack.run_worker()

    await expect(dashboard.stat("submitted")).to_have_text("4")
    await expect(dashboard.stat("landed")).to_have_text("3")
    await expect(dashboard.stat("failed")).to_have_text("1")
    await expect(dashboard.row(failed)).to_have_attribute("data-status", "FAILED")
    for ref in refs:
        await expect(dashboard.row(ref)).to_have_attribute("data-status", "LANDED")
    await expect(page.locator("img.thumb")).to_have_count(6)
    await loaded(page, page.locator("img.thumb"))
    assert await page.locator("#jobs tbody tr").evaluate_all(
        "rows => rows.map((row) => row.dataset.ref)"
    ) == [failed, *reversed(refs)]

    await dashboard.row(refs[-1]).click()
    await expect(page.locator('#timeline tr[data-event="job.landed"]')).to_have_count(1)
    dashboard.assert_quiet(stack)
    if os.environ.get("IMAGEDOCK_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=SCREENSHOT)


async def test_the_filters_narrow_the_table(stack: Stack, dashboard: Dashboard) -> None:
    """Choosing a status or a model shows only the jobs that have it, and live entries respect
    the choice."""
    page = await dashboard.live()
    grok = (await stack.submit("a red kite over dunes"))["ref"]
    flux = (await stack.submit("a tin robot", model="flux-2-pro", fluxParams={}))["ref"]
    await stack.run_worker()
    await expect(dashboard.row(flux)).to_have_attribute("data-status", "LANDED")

    await page.select_option("#model-filter", "flux-2-pro")
    await expect(page.locator("#jobs tbody tr")).to_have_count(1)
    await expect(dashboard.row(flux)).to_be_visible()

    await page.select_option("#model-filter", "")
    await page.select_option("#status-filter", "FAILED")
    await expect(page.locator("#jobs tbody tr")).to_have_count(0)
    stack.sim.config.failure_rate = 1.0
    failed = (await stack.submit("a portrait of a real, named person"))["ref"]
    await stack.run_worker()
    await expect(dashboard.row(failed)).to_have_attribute("data-status", "FAILED")
    await expect(page.locator("#jobs tbody tr")).to_have_count(1)
    await expect(dashboard.row(grok)).to_have_count(0)
    dashboard.assert_quiet(stack)


async def test_a_video_and_a_track_show_as_players(stack: Stack, dashboard: Dashboard) -> None:
    """A landed video shows as a video player and a link; a song's tracks as audio players
    whose files load from S3, with their covers as thumbnails."""
    page = await dashboard.live()
    video = (await stack.submit("a wave", operation="videos/generate", model="kling-3.0"))["ref"]
    song = (await stack.submit("a ballad", operation="music/generate", model="suno"))["ref"]
    await stack.run_worker()
    row = dashboard.row(video)
    await expect(row).to_have_attribute("data-status", "LANDED")
    player = row.locator("video.player")
    await expect(player).to_have_count(1)
    assert (await player.get_attribute("src") or "").startswith(s3_endpoint(stack))
    await expect(row.locator(".media a")).to_have_text("video ↗")
    await expect(row.locator(".model")).to_have_attribute("title", "videos/generate: kling-3.0")
    tracks = dashboard.row(song).locator("audio.player")
    await expect(tracks).to_have_count(2)
    await page.wait_for_function(  # a WAV the browser can read: its metadata loaded from S3
        "players => players.every((player) => player.readyState >= 1 && player.duration > 0)",
        arg=await tracks.element_handles(),
        timeout=WAIT_MS,
    )
    covers = dashboard.row(song).locator("img.thumb.cover")
    await expect(covers).to_have_count(2)
    await loaded(page, covers)
    dashboard.assert_quiet(stack)
