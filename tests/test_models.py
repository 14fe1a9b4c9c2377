"""Every image model on the route lands through the same pipeline, and Grok's two spellings of
its params block bill once whichever way Apiframe treats a refused key."""

import json
from typing import Any

import pytest

from tests.support.stack import Stack
from worker.apiframe.catalog import MODELS


@pytest.mark.parametrize(
    ("model", "block", "images"),
    [
        ("flux-2-pro", {"fluxParams": {"aspect_ratio": "16:9"}}, 1),
        ("imagen-4", {"params": {"aspect_ratio": "16:9"}}, 1),
        ("gpt-image-1.5", {"gptImageParams": {"number_of_images": 10}}, 10),
    ],
)
async def test_other_models_land_through_the_same_pipeline(
    stack: Stack, model: str, block: dict[str, Any], images: int
) -> None:
    """A Flux, an Imagen and a GPT Image job (all ten of its images) land, their params sent
    under the model's own key, and the model shows in the record, the event and the list."""
    answer = await stack.submit("a tin robot", model=model, **block)
    await stack.run_worker()
    job = await stack.job(answer["jobId"])
    assert (job["status"], job["model"], len(job["objects"])) == ("LANDED", model, images)
    [sent] = [json.loads(r.body) for r in stack.sim.submissions()]
    assert sent["model"] == model
    assert set(sent) - {"prompt", "model", "webhookUrl", "webhookEvents"} == {
        MODELS[model].params_key
    }
    [event] = stack.delivered("job.landed")
    assert (event["data"]["model"], len(event["data"]["images"])) == (model, images)
    listed = (await stack.api.get("/jobs", params={"model": model})).json()["jobs"]
    assert [j["jobId"] for j in listed] == [answer["jobId"]]
    metrics = (await stack.api.get("/metrics")).text
    assert f'imagedock_jobs_landed_total{{model="{model}"}} 1.0' in metrics


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"model": "flux-2-pro", "grokImagineParams": {}}, "not flux-2-pro's params block"),
        ({"model": "dall-e-9"}, "unknown model"),
        ({"model": "flux-lora"}, "needs its fluxLoraParams block"),
        ({"model": "gpt-image-2", "prompt": "x" * 2001}, "prompt"),
    ],
)
async def test_what_every_model_shares_is_checked_before_sending(
    stack: Stack, body: dict[str, Any], says: str
) -> None:
    """A wrong params block, an unknown model, a missing required block or a long prompt is a
    400 from imagedock itself, and nothing reaches Apiframe."""
    response = await stack.api.post("/jobs", json={"prompt": "p", **body})
    assert response.status_code == 400
    assert says in json.dumps(response.json())
    assert stack.sim.submissions() == []


async def test_apiframes_own_details_come_back(stack: Stack) -> None:
    """What imagedock leaves to Apiframe (a model's own params) comes back with its details."""
    block = {"gptImageParams": {"number_of_images": 11}}
    response = await stack.api.post("/jobs", json={"prompt": "p", "model": "gpt-image-2", **block})
    assert response.status_code == 400
    assert "gptImage2Params" in json.dumps(response.json()) or "gptImageParams" in str(
        response.json()
    )


@pytest.mark.parametrize("binds", [False, True])
async def test_the_spelling_fallback_bills_once(stack: Stack, binds: bool) -> None:
    """Apiframe accepting only `grokParams`: the refused body and the retried one go under
    different keys, so one job is billed whether or not a 400 binds its key, and a repeat of
    the caller's key replays that job."""
    stack.sim.config.params_field = "grokParams"
    stack.sim.config.bind_key_on_400 = binds
    credits = stack.sim.config.credits
    body = {"prompt": "p", "grokImagineParams": {"aspect_ratio": "9:16"}}
    first = await stack.api.post("/jobs", json=body, headers={"Idempotency-Key": "once"})
    assert first.status_code == 202, first.text
    await stack.submitted(first.json()["ref"])
    refused, accepted = stack.sim.submissions()
    assert (refused.status, accepted.status) == (400, 202)
    assert refused.headers["idempotency-key"] != accepted.headers["idempotency-key"]
    assert b'"grokParams"' in accepted.body
    assert len(stack.sim.jobs) == 1
    assert stack.sim.config.credits == credits - stack.sim.config.credit_cost
