"""Every Apiframe job route lands through the same pipeline: videos, tracks with their covers,
Midjourney grids and their actions, each file typed by its kind and named by it."""

import json

import httpx

from tests.support.stack import BUCKET, Stack
from tests.support.webhooks import post_hook
from worker.apiframe import ApiframeRequest
from worker.apiframe.catalog import OPERATIONS
from worker.apiframe.results import Asset, Kind
from worker.landing.job import refused_files
from worker.ledger import keys


async def test_a_video_lands_as_its_kind(stack: Stack) -> None:
    """A Kling video: `videoUrl` lands as `1.mp4`, byte for byte, typed as a video, and the
    job, its manifest and its event say what made it."""
    stack.sim.config.video_bytes = 3 * 1024 * 1024
    answer = await stack.submit("a heron takes off", operation="videos/generate", model="kling-3.0")
    job_id = answer["jobId"]
    await stack.run_worker()
    job = await stack.job(job_id)
    assert (job["status"], job["operation"]) == ("LANDED", "videos/generate")
    [video] = job["objects"]
    assert (video["kind"], video["key"]) == ("video", f"apiframe/{job_id}/1.mp4")
    url = stack.sim.jobs[job_id].outputs["videoUrl"]  # type: ignore[index]
    assert stack.object(video["key"]) == stack.sim.image(url).read()
    assert stack.s3.head_object(Bucket=BUCKET, Key=video["key"])["ContentType"] == "video/mp4"
    manifest = json.loads(stack.object(f"apiframe/{job_id}/manifest.json"))
    assert (manifest["operation"], manifest["objects"]) == ("videos/generate", job["objects"])
    [event] = stack.delivered("job.landed")
    assert event["data"]["operation"] == "videos/generate"
    assert event["data"]["objects"][0]["kind"] == "video"
    assert "images" not in event["data"]
    [submitted] = stack.sim.submissions()
    assert submitted.path == "/v2/videos/generate"
    assert "prompt" in json.loads(submitted.body)


async def test_a_songs_tracks_land_with_their_covers(stack: Stack) -> None:
    """Suno's two tracks: each audio file and its cover art, named by the track."""
    answer = await stack.submit("a sea shanty about S3", operation="music/generate", model="suno")
    job_id = answer["jobId"]
    await stack.run_worker()
    job = await stack.job(job_id)
    assert job["status"] == "LANDED"
    prefix = f"apiframe/{job_id}/"
    assert stack.keys(job_id) == [
        prefix + name
        for name in (
            "manifest.json",
            "track-1-cover.png",
            "track-1.wav",
            "track-2-cover.png",
            "track-2.wav",
        )
    ]
    tracks = stack.sim.jobs[job_id].outputs["tracks"]  # type: ignore[index]
    kinds = [(o["kind"], o.get("trackId")) for o in job["objects"]]
    assert kinds == [
        ("audio", tracks[0]["id"]),
        ("cover", tracks[0]["id"]),
        ("audio", tracks[1]["id"]),
        ("cover", tracks[1]["id"]),
    ]
    audio = job["objects"][0]
    assert stack.object(audio["key"]) == stack.sim.image(tracks[0]["audioUrl"]).read()
    assert stack.s3.head_object(Bucket=BUCKET, Key=audio["key"])["ContentType"] == "audio/wav"


async def test_a_midjourney_grid_then_its_upsample(stack: Stack) -> None:
    """A grid lands its four images and the grid; U2 names the grid by imagedock's ref, is
    sent Apiframe's id for it, and lands one image whose manifest and event name the parent."""
    grid = await stack.submit("a lighthouse in fog", model="midjourney")
    await stack.run_worker()
    landed = await stack.job(grid["jobId"])
    assert [o["kind"] for o in landed["objects"]] == ["image"] * 4 + ["grid"]
    assert landed["objects"][-1]["key"] == f"apiframe/{grid['jobId']}/grid.png"

    action = {"operation": "images/midjourney/action", "action": "upsample", "index": 2}
    response = await stack.api.post("/jobs", json={**action, "parentJobId": grid["ref"]})
    assert response.status_code == 202, response.text
    upsampled = await stack.submitted(response.json()["ref"])
    await stack.run_worker()
    job = await stack.job(upsampled["jobId"])
    assert (job["status"], job["action"]) == ("LANDED", "upsample")
    assert (job["parentJobId"], job["model"]) == (grid["jobId"], "midjourney")
    sent = json.loads(stack.sim.submissions()[-1].body)
    assert (sent["parentJobId"], sent["index"], sent["action"]) == (grid["jobId"], 2, "upsample")
    assert "model" not in sent
    manifest = json.loads(stack.object(f"apiframe/{upsampled['jobId']}/manifest.json"))
    assert (manifest["parentJobId"], manifest["action"]) == (grid["jobId"], "upsample")
    [event] = stack.delivered("job.landed")[-1:]
    assert event["data"]["parentJobId"] == grid["jobId"]
    again = await stack.api.post("/jobs", json={**action, "parentJobId": upsampled["jobId"]})
    assert again.status_code == 400
    assert "acts on a grid of four" in again.json()["details"]["parentJobId"]


async def test_bad_routes_and_parents_are_refused_by_field(stack: Stack) -> None:
    """A model sent to another route, an action on a job imagedock does not know, or on one
    not finished: 400s naming the field, and nothing sent to Apiframe."""
    cases = [
        ({"prompt": "a fox", "operation": "videos/generate", "model": "flux-2-pro"}, "model"),
        ({"operation": "images/upscale", "model": "topaz-image-upscale"}, "topazUpscaleParams"),
        ({"operation": "images/upscale", "model": "topaz-image-upscale", "prompt": "x",
          "topazUpscaleParams": {"image": "https://example.com/a.png"}}, "prompt"),
        ({"operation": "music/suno/action", "action": "stems",
          "parentJobId": "0" * 32}, "parentJobId"),
        ({"operation": "images/midjourney/action", "action": "zoom",
          "parentJobId": "0" * 32}, "action"),
        ({"operation": "images/generate/more", "prompt": "a fox"}, "operation"),
    ]  # fmt: skip
    for body, field in cases:
        response = await stack.api.post("/jobs", json=body)
        assert response.status_code == 400, body
        assert field in response.json()["details"], response.json()
    stack.sim.config.stall = True
    running = await stack.submit("a grid", model="midjourney")
    body = {"operation": "images/midjourney/action", "action": "variation", "index": 1,
            "parentJobId": running["jobId"]}  # fmt: skip
    refused = await stack.api.post("/jobs", json=body)
    assert refused.status_code == 400
    assert "needs it finished" in refused.json()["details"]["parentJobId"]
    assert len(stack.sim.submissions()) == 1


async def test_a_file_of_another_kind_fails_the_job_cleanly(stack: Stack) -> None:
    """A CDN that answers an image where a video was promised fails the job with the reason,
    and leaves nothing of it in S3."""
    stack.sim.plan_next_job(wrong_kind=True)
    answer = await stack.submit("a comet", operation="videos/generate", model="veo-3")
    await stack.run_worker()
    ended = await stack.job(answer["jobId"])
    assert ended["status"] == "FAILED"
    assert "is not a video: the CDN sent image/png" in ended["error"]
    assert stack.keys(answer["jobId"]) == []


async def test_a_download_cut_at_half_resumes_where_it_broke(stack: Stack) -> None:
    """A CDN that serves ranges and breaks off half-way is asked for the rest: the video lands
    whole in one attempt, by parts, from two requests."""
    stack.sim.config.video_bytes = 20 * 1024 * 1024  # past one part: a multipart upload
    stack.sim.plan_next_job(cdn_truncate=True)
    answer = await stack.submit("a tide", operation="videos/generate", model="kling-2.6")
    await stack.run_worker()
    job = await stack.job(answer["jobId"])
    assert job["status"] == "LANDED"
    url = stack.sim.jobs[answer["jobId"]].outputs["videoUrl"]  # type: ignore[index]
    assert stack.sim.cdn_requests[url.rsplit("/", 1)[-1]] == 2
    assert stack.object(job["objects"][0]["key"]) == stack.sim.image(url).read()
    assert "landing.retry" not in await stack.log_events(answer["jobId"])


async def test_a_landed_image_is_upscaled_and_cut_out_by_reference(stack: Stack) -> None:
    """An upscale and a background removal name an image imagedock landed by its key: Apiframe
    is sent a presigned URL that serves it, the record keeps the reference, not the URL."""
    first = await stack.submit("a teapot")
    await stack.run_worker()
    [landed] = (await stack.job(first["jobId"]))["objects"]
    routes = [
        ("images/upscale", "topaz-image-upscale", "topazUpscaleParams"),
        ("images/background-remove", "bria-bg-remove", "briaBgRemoveParams"),
    ]
    async with httpx.AsyncClient() as http:
        for operation, model, block in routes:
            body = {"operation": operation, "model": model, block: {"image": {"s3": landed["key"]}}}
            response = await stack.api.post("/jobs", json=body)
            assert response.status_code == 202, response.text
            submitted = await stack.submitted(response.json()["ref"])
            sent = json.loads(stack.sim.submissions()[-1].body)[block]["image"]
            assert (await http.get(sent)).content == stack.object(landed["key"])
            await stack.run_worker()
            job = await stack.job(submitted["jobId"])
            assert (job["status"], job["operation"]) == ("LANDED", operation)
            assert job["params"] == {"image": {"s3": landed["key"]}}
            assert sent not in json.dumps(job)


async def test_a_reference_outside_the_prefix_or_missing_is_refused(stack: Stack) -> None:
    """Only objects under imagedock's prefix that exist may be named; nothing is sent."""
    for key, said in (("private/payroll.pdf", "is not a file imagedock landed"),
                      ("apiframe/../x.png", "is not a file imagedock landed"),
                      ("apiframe-other/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12 + "/1.png",
                       "is not a file imagedock landed"),
                      ("apiframe/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12 + "/../../x",
                       "is not a file imagedock landed"),
                      ("apiframe/" + "1" * 8 + "-1111-1111-1111-" + "1" * 12 + "/1.png",
                       "does not exist")):  # fmt: skip
        body = {"operation": "images/upscale", "model": "clarity-upscale",
                "clarityUpscaleParams": {"image": {"s3": key}}}  # fmt: skip
        response = await stack.api.post("/jobs", json=body)
        assert response.status_code == 400
        assert said in response.json()["details"]["clarityUpscaleParams.image"]
    assert stack.sim.submissions() == []


async def test_a_result_of_no_known_shape_is_asked_again_then_failed(stack: Stack) -> None:
    """A result naming files in a shape imagedock does not know is not dropped: Apiframe is
    asked again, and the job fails with the shape it saw."""
    stack.sim.config.webhook_result_shape = "unknown"
    stack.sim.config.job_result_shape = "unknown"
    answer = await stack.submit("a kite")
    await stack.run_worker()
    job = await stack.job(answer["jobId"])
    assert job["status"] == "FAILED"
    assert "naming no file: an object with clips" in job["error"]
    asked = [r for r in stack.sim.received if r.path == f"/v2/jobs/{answer['jobId']}"]
    assert asked


async def test_a_video_is_polled_at_its_own_cadence(stack: Stack) -> None:
    """A job whose webhook has not come is checked again as Apiframe advises for what it makes:
    an image 2 s later, a video 5 s later."""
    stack.sim.config.stall = True
    image = await stack.submit("a stalled still")
    video = await stack.submit("a stalled take", operation="videos/generate", model="veo-3")
    await stack.wait_until_due()
    assert await stack.poll() == 2
    intervals = [(await stack.ledger.get(job["ref"])) for job in (image, video)]
    assert [record.poll_interval for record in intervals if record] == [2.0, 5.0]


async def test_a_retried_submit_sends_the_same_presigned_url(stack: Stack) -> None:
    """A submit naming an input by reference that Apiframe answered 503 is sent again, after
    a backoff of a second, with the same body and the same URL, so Apiframe sees one request
    made twice; once Apiframe has the job, the record keeps the URL no longer."""
    first = await stack.submit("a teapot")
    await stack.run_worker()
    [landed] = (await stack.job(first["jobId"]))["objects"]
    body = {"operation": "images/background-remove", "model": "851-bg-remove",
            "lab851BgRemoveParams": {"image": {"s3": landed["key"]}}}  # fmt: skip
    headers = {"Idempotency-Key": "cutout-7"}
    stack.sim.fail_next(503, path="/v2/images/background-remove")
    accepted = await stack.api.post("/jobs", json=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    await stack.submitted(accepted.json()["ref"])
    sent = [r.body for r in stack.sim.submissions() if r.path.endswith("background-remove")]
    assert len(sent) == 2
    assert sent[0] == sent[1]
    kept = await stack.redis.hexists(keys.job(accepted.json()["ref"]), "sent_params")  # type: ignore[misc]
    assert not kept


async def test_a_large_file_already_in_s3_is_not_uploaded_again(stack: Stack) -> None:
    """A landing that finds its large file already stored (a run that crashed after S3 took
    it, before the ledger did) starts no multipart upload: the object is left as it was, and
    the record gets its digest from the bytes downloaded."""
    stack.sim.config.video_bytes = 12 * 1024 * 1024
    stack.sim.config.drop_rate = 1.0  # its webhook is sent below, once the object is in place
    answer = await stack.submit("a glacier", operation="videos/generate", model="veo-3.1")
    await stack.sim.settle()
    job_id = answer["jobId"]
    url = stack.sim.jobs[job_id].outputs["videoUrl"]  # type: ignore[index]
    key = f"apiframe/{job_id}/1.mp4"
    stack.s3.put_object(Bucket=BUCKET, Key=key, Body=stack.sim.image(url).read(),
                        Metadata={"source-url": url})  # fmt: skip
    before = stack.s3.head_object(Bucket=BUCKET, Key=key)["LastModified"]
    uploads: list[str] = []
    stack.deps.store.client.meta.events.register(
        "before-call.s3.CreateMultipartUpload", lambda **_: uploads.append("created")
    )
    completed = {"event": "completed", "jobId": job_id, "status": "COMPLETED",
                 "result": {"videoUrl": url}}  # fmt: skip
    assert (await post_hook(stack, completed, ref=answer["ref"])).status_code == 200
    await stack.run_worker()
    landed = await stack.job(job_id)
    assert landed["status"] == "LANDED"
    assert landed["objects"][0]["sha256"] == stack.sim.image(url).sha256()
    assert stack.s3.head_object(Bucket=BUCKET, Key=key)["LastModified"] == before
    assert uploads == []


async def test_a_bare_url_is_the_file_its_route_makes(stack: Stack) -> None:
    """A result that is only a URL (an older shape) lands as what the route makes: on a video
    route, a video."""
    stack.sim.plan_next_job(webhook_result_shape="string", job_result_shape="string")
    answer = await stack.submit("a storm", operation="videos/generate", model="sora-2")
    await stack.run_worker()
    job = await stack.job(answer["jobId"])
    assert job["status"] == "LANDED", job["error"]
    assert [(o["kind"], o["key"].rsplit("/", 1)[1]) for o in job["objects"]] == [("video", "1.mp4")]


def test_files_a_route_does_not_make_are_refused() -> None:
    """An upscale naming a video, a Kling job naming two, a song with more covers than tracks:
    each refused with what is wrong."""
    upscale, video, music = (OPERATIONS[path] for path in
                             ("images/upscale", "videos/generate", "music/generate"))  # fmt: skip
    said = refused_files([Asset(Kind.VIDEO, 1, "u")], upscale, "topaz-image-upscale")
    assert said is not None
    assert "video files for images/upscale" in said
    two = [Asset(Kind.VIDEO, 1, "u"), Asset(Kind.VIDEO, 2, "v")]
    assert "2 videos; kling-3.0 returns 1" in (refused_files(two, video, "kling-3.0") or "")
    covers = [Asset(Kind.AUDIO, 1, "a"), Asset(Kind.COVER, 1, "c"), Asset(Kind.COVER, 2, "d")]
    assert "covers" in (refused_files(covers, music, "suno") or "")
    assert refused_files(covers[:2], music, "suno") is None


async def test_a_tracked_video_is_landed_as_a_video(stack: Stack) -> None:
    """A video job submitted elsewhere and tracked is recorded with its route, and lands as a
    video."""
    request = ApiframeRequest(operation="videos/generate", model="luma-ray-2", prompt="a fox")
    job_id = (await stack.deps.apiframe.submit(request)).job_id
    assert (await stack.api.post("/jobs/track", json={"jobId": job_id})).status_code == 202
    record = await stack.ledger.by_job_id(job_id)
    assert record is not None
    assert record.operation == "videos/generate"
    await stack.sim.settle()
    await stack.poll()
    await stack.run_worker()
    job = await stack.job(job_id)
    assert (job["status"], job["objects"][0]["kind"]) == ("LANDED", "video")


async def test_a_replay_keeps_a_manifest_written_before(stack: Stack) -> None:
    """A replay of a job whose manifest an earlier version wrote in another shape leaves it
    as it is and delivers the events again."""
    job_id = (await stack.submit("an old job"))["jobId"]
    await stack.run_worker()
    key = f"apiframe/{job_id}/manifest.json"
    stack.s3.delete_object(Bucket=BUCKET, Key=key)
    stack.s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"jobId": "written before kinds"}')
    assert (await stack.api.post(f"/jobs/{job_id}/replay")).status_code == 202
    await stack.run_worker()
    assert stack.object(key) == b'{"jobId": "written before kinds"}'
    assert len(stack.delivered("job.landed")) == 2


async def test_a_request_naming_too_many_objects_costs_s3_nothing(stack: Stack) -> None:
    """A body naming more objects than any route takes is refused before one is looked up:
    a thousand of them ask S3 nothing."""
    heads: list[str] = []
    stack.deps.store.client.meta.events.register(
        "before-call.s3.HeadObject", lambda **_: heads.append("head")
    )
    key = "apiframe/" + "1" * 8 + "-1111-1111-1111-" + "1" * 12 + "/1.png"
    body = {"prompt": "a collage", "model": "nano-banana-pro",
            "nanoBananaParams": {"image_input": [{"s3": key}] * 17}}  # fmt: skip
    for _ in range(1000):
        response = await stack.api.post("/jobs", json=body)
        assert response.status_code == 400
    assert "at most 16" in response.json()["details"]["nanoBananaParams"]
    assert heads == []
    assert stack.sim.submissions() == []
