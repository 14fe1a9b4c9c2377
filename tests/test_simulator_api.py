"""The simulator's v2 API: auth, strict bodies, idempotency, credits, the lifecycle and listings."""

import asyncio
import dataclasses
import socket
import uuid
from typing import Any

import httpx
import pytest

from simulator import Simulator, SimulatorConfig
from simulator.command import build_parser
from simulator.flags import config_from_args
from simulator.serving import bound_socket, serving
from tests.support.stack import API_KEY, Apiframe, fast_config
from worker.apiframe import Job
from worker.apiframe.models import MODEL as GROK

GENERATE = "/v2/images/generate"


async def wait_for_status(http: httpx.AsyncClient, url: str, *statuses: str) -> dict[str, Any]:
    for _ in range(500):
        job: dict[str, Any] = (await http.get(url)).json()
        if job["status"] in statuses:
            return job
        await asyncio.sleep(0.01)
    raise AssertionError(f"job never reached {statuses}: {job}")


async def test_served_connections_send_without_delay() -> None:
    """The simulator's (and the tests') servers answer at once: asyncio turns Nagle off only on
    connections accepted from a socket made as TCP by name, and with Nagle on an answer written
    in two parts waits out the client's delayed ACK."""
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Note(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    listening = bound_socket()
    listening.listen()
    server = await asyncio.get_running_loop().create_server(Note, sock=listening)
    async with server:
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        assert await accepted != 0
        writer.close()


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "Missing API key"),
        ({"X-API-Key": "sk_not_an_apiframe_key"}, 401, "Invalid API key"),
        ({"X-API-Key": "afk_inactive"}, 403, "inactive"),
    ],
)
async def test_refuses_missing_invalid_and_inactive_keys(
    apiframe: Apiframe, headers: dict[str, str], status: int, message: str
) -> None:
    """Keys are checked before anything else, with Apiframe's status for each case."""
    apiframe.sim.config.inactive_keys = ("afk_inactive",)
    async with httpx.AsyncClient(base_url=apiframe.url, headers=headers) as http:
        response = await http.post(GENERATE, json={"model": GROK, "prompt": "x"})
    assert response.status_code == status
    assert message in response.json()["error"]
    assert not apiframe.sim.jobs


async def test_configured_keys_replace_the_afk_prefix_rule(apiframe: Apiframe) -> None:
    """With keys configured, only those keys are accepted."""
    apiframe.sim.config.api_keys = ("afk_only_this_one",)
    async with httpx.AsyncClient(base_url=apiframe.url) as http:
        other = await http.get("/v2/me", headers={"X-API-Key": API_KEY})
        known = await http.get("/v2/me", headers={"X-API-Key": "afk_only_this_one"})
    assert (other.status_code, known.status_code) == (401, 200)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": GROK, "prompt": ""}, "prompt"),
        ({"model": GROK, "prompt": "x" * 2001}, "prompt"),
        ({"prompt": "x", "model": "dall-e-9"}, "model"),
        ({"model": GROK, "prompt": "x", "webhookUrl": "not a url"}, "webhookUrl"),
        ({"model": GROK, "prompt": "x", "webhookEvents": []}, "webhookEvents"),
        ({"model": GROK, "prompt": "x", "webhookEvents": ["done"]}, "webhookEvents"),
        (
            {"model": GROK, "prompt": "x", "grokImagineParams": {"aspect_ratio": "4:3"}},
            "aspect_ratio",
        ),
        ({"model": GROK, "prompt": "x", "grokImagineParams": {"image": "ftp://x"}}, "image"),
        ({"model": GROK, "prompt": "x", "grokImagineParams": {"seed": 3}}, "seed"),
        ({"model": GROK, "prompt": "x", "colour": "red"}, "colour"),
        ({"model": GROK, "prompt": "x", "grokParams": {}}, "grokParams"),
        (["prompt"], ""),
    ],
)
async def test_strict_validation_names_the_field(
    apiframe: Apiframe, http: httpx.AsyncClient, body: Any, field: str
) -> None:
    """Every invalid body answers 400 with `details` naming what is wrong, and creates no job."""
    response = await http.post(apiframe.url + GENERATE, json=body)
    assert response.status_code == 400
    answer = response.json()
    assert set(answer) == {"error", "details"}
    assert field in str(answer)
    assert not apiframe.sim.jobs


async def test_malformed_json_is_a_400(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """A body that is not JSON answers 400 in Apiframe's error shape."""
    response = await http.post(apiframe.url + GENERATE, content=b"{prompt")
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid JSON body"


async def test_params_spelling_is_a_switch(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """Switched to `grokParams`, the simulator accepts it and refuses `grokImagineParams`."""
    apiframe.sim.config.params_field = "grokParams"
    params = {"aspect_ratio": "16:9"}
    refused = await http.post(
        apiframe.url + GENERATE, json={"model": GROK, "prompt": "x", "grokImagineParams": params}
    )
    accepted = await http.post(
        apiframe.url + GENERATE, json={"model": GROK, "prompt": "x", "grokParams": params}
    )
    assert refused.status_code == 400
    assert "Unrecognized keys: 'grokImagineParams'" in refused.json()["error"]
    assert accepted.status_code == 202
    assert apiframe.sim.jobs[accepted.json()["jobId"]].params == params


async def test_idempotency_key_replays_and_conflicts(
    apiframe: Apiframe, http: httpx.AsyncClient
) -> None:
    """The same key and body return the original job; another body answers 409."""
    url = apiframe.url + GENERATE
    first = await http.post(
        url, json={"model": GROK, "prompt": "a"}, headers={"Idempotency-Key": "k1"}
    )
    await wait_for_status(http, f"{apiframe.url}/v2/jobs/{first.json()['jobId']}", "COMPLETED")
    again = await http.post(
        url, json={"model": GROK, "prompt": "a"}, headers={"Idempotency-Key": "k1"}
    )
    other = await http.post(
        url, json={"model": GROK, "prompt": "b"}, headers={"Idempotency-Key": "k1"}
    )
    too_long = await http.post(
        url, json={"model": GROK, "prompt": "a"}, headers={"Idempotency-Key": "k" * 256}
    )
    assert first.status_code == again.status_code == 202
    assert again.json() == {"jobId": first.json()["jobId"], "status": "COMPLETED"}
    assert other.status_code == 409
    assert too_long.status_code == 400
    assert len(apiframe.sim.jobs) == 1


async def test_credits_run_out_and_failures_refund(
    apiframe: Apiframe, http: httpx.AsyncClient
) -> None:
    """Submitting costs credits (402 when short, with both counts); a failed job refunds them."""
    apiframe.sim.config.credits = 10
    apiframe.sim.config.failure_rate = 1.0
    first = await http.post(apiframe.url + GENERATE, json={"model": GROK, "prompt": "a"})
    short = await http.post(apiframe.url + GENERATE, json={"model": GROK, "prompt": "b"})
    assert short.status_code == 402
    assert short.json() == {
        "error": "Insufficient credits",
        "creditsRequired": 10,
        "creditsAvailable": 0,
    }
    failed = await wait_for_status(
        http, f"{apiframe.url}/v2/jobs/{first.json()['jobId']}", "FAILED"
    )
    assert failed["error"]
    assert apiframe.sim.config.credits == 10


async def test_lifecycle_rises_to_completed(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """A job moves QUEUED, PROCESSING with rising progress, then COMPLETED with a result."""
    apiframe.sim.config.queued_seconds = 0.05
    apiframe.sim.config.processing_seconds = 0.3
    apiframe.sim.config.progress_steps = 3
    job_id = (await http.post(apiframe.url + GENERATE, json={"model": GROK, "prompt": "a"})).json()[
        "jobId"
    ]
    seen: list[tuple[str, int | None]] = []
    while not seen or seen[-1][0] != "COMPLETED":
        job = (await http.get(f"{apiframe.url}/v2/jobs/{job_id}")).json()
        if not seen or seen[-1] != (job["status"], job["progress"]):
            seen.append((job["status"], job["progress"]))
        await asyncio.sleep(0.005)
    statuses = [status for status, _ in seen]
    progress = [p or 0 for status, p in seen if status == "PROCESSING"]
    assert statuses[0] == "QUEUED"
    assert "PROCESSING" in statuses
    assert progress == sorted(progress)
    assert len(progress) >= 2
    assert job["progress"] == 100
    assert job["result"]["images"]
    assert job["completedAt"].endswith("Z")


async def test_stalled_jobs_stay_processing(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """With `stall`, a job never leaves PROCESSING."""
    apiframe.sim.config.stall = True
    job_id = (await http.post(apiframe.url + GENERATE, json={"model": GROK, "prompt": "a"})).json()[
        "jobId"
    ]
    await apiframe.sim.settle()
    job = (await http.get(f"{apiframe.url}/v2/jobs/{job_id}")).json()
    assert (job["status"], job["result"]) == ("PROCESSING", None)


async def test_job_lookup_errors(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """A job id that is not a UUID is a 400; an unknown one is a 404."""
    bad = await http.get(f"{apiframe.url}/v2/jobs/not-a-uuid")
    unknown = await http.get(f"{apiframe.url}/v2/jobs/{uuid.uuid4()}")
    assert (bad.status_code, unknown.status_code) == (400, 404)


async def test_list_jobs_filters_and_pages(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """The listing is newest first, filters by status, and pages with a cursor."""
    apiframe.sim.config.stall = True
    for n in range(5):
        await http.post(apiframe.url + GENERATE, json={"model": GROK, "prompt": f"p{n}"})
    await apiframe.sim.settle()
    ids: list[str] = []
    cursor: str | None = None
    while True:
        query = {"limit": "2", "status": "PROCESSING", **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"{apiframe.url}/v2/jobs", params=query)).json()
        ids += [job["id"] for job in page["jobs"]]
        cursor = page["nextCursor"]
        if not page["hasMore"]:
            break
    newest_first = sorted(apiframe.sim.jobs.values(), key=lambda job: -job.created_at)
    assert ids == [job.id for job in newest_first]
    none = await http.get(f"{apiframe.url}/v2/jobs", params={"status": "COMPLETED"})
    assert none.json()["jobs"] == []
    too_many = await http.get(f"{apiframe.url}/v2/jobs", params={"limit": "101"})
    assert too_many.status_code == 400


async def test_me_identifies_the_team(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """`GET /v2/me` names the key's user and team."""
    me = (await http.get(f"{apiframe.url}/v2/me")).json()
    assert me["team"]["credits"] == apiframe.sim.config.credits
    assert me["apiKey"]["prefix"] == API_KEY[:8]


async def test_every_request_is_recorded(apiframe: Apiframe, http: httpx.AsyncClient) -> None:
    """What the simulator received is kept for tests, with the status it answered."""
    await http.post(
        apiframe.url + GENERATE, json={"model": GROK, "prompt": "a"}, headers={"X-Trace": "t1"}
    )
    await http.get(f"{apiframe.url}/v2/me")
    assert [(r.method, r.path, r.status) for r in apiframe.sim.received] == [
        ("POST", GENERATE, 202),
        ("GET", "/v2/me", 200),
    ]
    assert apiframe.sim.received[0].headers["x-trace"] == "t1"


async def test_a_seed_makes_a_run_reproducible(http: httpx.AsyncClient) -> None:
    """Two simulators with the same seed fail the same jobs."""
    outcomes = []
    for _ in range(2):
        simulator = Simulator(fast_config(failure_rate=0.5, seed=42))
        async with serving(simulator.app) as url:
            for n in range(8):
                await http.post(url + GENERATE, json={"model": GROK, "prompt": f"p{n}"})
            await simulator.settle()
        ordered = sorted(simulator.jobs.values(), key=lambda job: job.created_at)
        outcomes.append([job.status for job in ordered])
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {"COMPLETED", "FAILED"}


async def test_job_result_shape_changes_what_get_job_shows(
    apiframe: Apiframe, http: httpx.AsyncClient
) -> None:
    """`job_result_shape="string"` makes `GET /v2/jobs/{id}` show a bare URL, as old docs do."""
    apiframe.sim.config.job_result_shape = "string"
    job_id = (await http.post(apiframe.url + GENERATE, json={"model": GROK, "prompt": "a"})).json()[
        "jobId"
    ]
    await apiframe.sim.settle()
    job = (await http.get(f"{apiframe.url}/v2/jobs/{job_id}")).json()
    assert job["result"] == apiframe.sim.jobs[job_id].image_urls[0]
    assert [a.url for a in Job.model_validate(job).assets] == apiframe.sim.jobs[job_id].image_urls


def test_every_knob_is_a_command_line_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """Each SimulatorConfig field can be set from `imagedock simulator`'s flags."""
    args = build_parser().parse_args(
        [
            "--api-key",
            "afk_a",
            "--api-key",
            "afk_b",
            "--fail-next",
            "429x2",
            "--stall",
            "--delay-seconds=0.25",
            "--images-per-job=3",
            "--image-format=webp",
            "--retry-schedule=1,2.5",
        ]
    )
    config = config_from_args(args)
    assert config.api_keys == ("afk_a", "afk_b")
    assert (config.stall, config.delay_seconds, config.images_per_job) == (True, 0.25, 3)
    assert (config.image_format, config.retry_schedule) == ("webp", (1.0, 2.5))
    assert [(f.status, f.times) for f in config.faults] == [(429, 2)]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    usage = capsys.readouterr().out
    for knob in dataclasses.fields(SimulatorConfig):
        if knob.name not in ("faults", "api_keys"):
            assert "--" + knob.name.replace("_", "-") in usage


@pytest.mark.parametrize(
    ("knob", "status"), [("failure_rate", "FAILED"), ("cancel_rate", "CANCELLED")]
)
async def test_a_job_that_does_not_complete_is_refunded(
    apiframe: Apiframe, http: httpx.AsyncClient, knob: str, status: str
) -> None:
    """A FAILED or CANCELLED job shows progress 0 and creditCost 0, its credits back, and never
    `expired`, which concerns completed jobs only."""
    setattr(apiframe.sim.config, knob, 1.0)
    apiframe.sim.config.file_ttl_seconds = 0
    credits = apiframe.sim.config.credits
    sent = await http.post(apiframe.url + GENERATE, json={"model": GROK, "prompt": "a"})
    await apiframe.sim.settle()
    job = (await http.get(f"{apiframe.url}/v2/jobs/{sent.json()['jobId']}")).json()
    assert (job["status"], job["progress"], job["creditCost"]) == (status, 0, 0)
    assert job["expired"] is False
    assert apiframe.sim.config.credits == credits


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("images/upscale", {"model": "topaz-image-upscale",
                            "topazUpscaleParams": {"image": "https://cdn.test/a.png",
                                                   "upscale_factor": 3}},
         "topazUpscaleParams.upscale_factor"),
        ("images/upscale", {"model": "topaz-image-upscale",
                            "topazUpscaleParams": {"image": "https://cdn.test/a.png", "dpi": 9}},
         "topazUpscaleParams"),
        ("videos/generate", {"model": "kling-3.0", "prompt": "a wave",
                             "klingParams": {"duration": 30}}, "klingParams.duration"),
        ("videos/generate", {"model": "flux-2-pro", "prompt": "a wave"}, "model"),
        ("music/generate", {"model": "suno", "prompt": "a song", "fluxParams": {}}, ""),
    ],
)  # fmt: skip
async def test_every_route_checks_its_body_against_apiframes_schema(
    apiframe: Apiframe, http: httpx.AsyncClient, route: str, body: dict[str, Any], field: str
) -> None:
    """The nine routes beside images/generate refuse what Apiframe's own request schema does,
    naming the field, and create no job."""
    response = await http.post(f"{apiframe.url}/v2/{route}", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["details"]
    assert apiframe.sim.jobs == {}


async def test_an_action_not_available_for_its_parent_is_a_409(
    apiframe: Apiframe, http: httpx.AsyncClient
) -> None:
    """U1 of a grid makes an upscaled image; upsampling that image again is not available."""
    body = {"model": "midjourney", "prompt": "a bay"}
    grid = (await http.post(f"{apiframe.url}{GENERATE}", json=body)).json()["jobId"]
    await wait_for_status(http, f"{apiframe.url}/v2/jobs/{grid}", "COMPLETED")
    action = f"{apiframe.url}/v2/images/midjourney/action"
    upsampled = await http.post(
        action, json={"action": "upsample", "index": 1, "parentJobId": grid}
    )
    assert upsampled.status_code == 202
    child = upsampled.json()["jobId"]
    done = await wait_for_status(http, f"{apiframe.url}/v2/jobs/{child}", "COMPLETED")
    assert len(done["result"]["images"]) == 1
    again = await http.post(action, json={"action": "upsample", "index": 1, "parentJobId": child})
    assert again.status_code == 409
    panned = await http.post(
        action, json={"action": "pan", "direction": "left", "parentJobId": child}
    )
    assert panned.status_code == 202
