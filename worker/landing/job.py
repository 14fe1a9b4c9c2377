"""Landing a completed job: every file its result names (images, a grid, a video, tracks and
their covers, stems) and a manifest in S3, then LANDED and its event.

Running it again for a landed job uploads nothing and changes nothing: files already recorded are
skipped, S3 writes are create-only, and the ledger only moves forward. A replay (`verify=True`)
also checks that every recorded object is still in S3 and restores any that is not.
"""

import time
from dataclasses import dataclass

from worker import metrics
from worker.apiframe import ApiframeClient, ApiframeError, JobNotFound, RateLimited
from worker.apiframe.catalog import GENERATE, OPERATIONS, Operation, metric_label, route_named
from worker.apiframe.results import MADE, Asset, Kind, dumps, for_route, shape_of
from worker.events import Events
from worker.landing.download import Downloader
from worker.landing.errors import PermanentError, TransientError
from worker.landing.storage import ObjectStore, json_blob
from worker.landing.upload import ObjectWriter
from worker.ledger.ledger import Ledger
from worker.ledger.log import Noted
from worker.ledger.records import JobRecord, StoredObject, costed
from worker.ledger.waiting import OPERATOR
from worker.status import FAILURES, Status, from_apiframe
from worker.traces import tracer


@dataclass(frozen=True)
class LandingDeps:
    """What landing needs, made once per worker process."""

    ledger: Ledger
    events: Events
    apiframe: ApiframeClient
    downloader: Downloader
    store: ObjectStore


SLOWER = {"image": 1.0, "music": 3.0, "video": 10.0}  # a landing's time, against images'


NOUNS = {Kind.IMAGE: "images", Kind.VIDEO: "videos", Kind.AUDIO: "tracks", Kind.STEM: "stems"}


def refused_files(assets: list[Asset], route: Operation, model: str) -> str | None:
    """Why a result's files are not what a job of `model` on `route` makes, if they are not:
    a kind the route does not make, more of a kind than the model's most, more than one grid,
    or more covers than tracks."""
    foreign = sorted({asset.kind.value for asset in assets} - MADE[route.makes])
    if foreign:
        return f"Apiframe named {', '.join(foreign)} files for {route.path}, which makes none"
    most = route.most(model)
    for kind, noun in NOUNS.items():
        count = sum(1 for asset in assets if asset.kind is kind)
        if count > most:
            return f"Apiframe returned {count} {noun}; {model or route.path} returns {most}"
    grids = sum(1 for asset in assets if asset.kind is Kind.GRID)
    covers = sum(1 for asset in assets if asset.kind is Kind.COVER)
    if grids > 1 or covers > sum(1 for asset in assets if asset.kind is Kind.AUDIO):
        return f"Apiframe returned {grids} grids and {covers} covers for one job"
    return None


def landing_timeout(base: float, operation: str = GENERATE, model: str = "") -> float:
    """`base` covers four images, as most models return at most; more files, more time, and a
    video or a track takes longer than an image. With no model, the longest of the route."""
    route = route_named(operation)
    return base * max(1.0, route.most(model) / 4) * SLOWER[route.makes]


LONGEST_LANDING = max(landing_timeout(1.0, operation) for operation in OPERATIONS)  # x base


class NotReady(TransientError):
    """Apiframe shows the job COMPLETED but naming no file yet: check again a few times."""


async def land_job(
    deps: LandingDeps,
    job_id: str,
    actor: str = "worker",
    *,
    verify: bool = False,
    record: JobRecord | None = None,
) -> Status:
    """Land `job_id`'s images and manifest; returns the status the job ends in. `record`, if
    the caller has just read it, saves reading it again."""
    record = record or await deps.ledger.by_job_id(job_id)
    if record is None:
        await deps.ledger.log(None, job_id, actor, "landing.unknown_job")
        return Status.FAILED
    makes = route_named(record.operation).makes
    if record.status == Status.LANDED and verify:
        await store_all(deps, record, for_route(record.assets, makes), actor, verify=True)
    if record.status == Status.LANDED or record.status in FAILURES:
        await deps.events.publish_pending(record.ref, actor)  # owed if a crash came between
        return record.status
    try:
        assets = for_route(record.assets or await confirm(deps, record, actor), makes)
        if not assets:
            return (await deps.ledger.get(record.ref) or record).status
        return await store_all(deps, record, assets, actor)
    except PermanentError as exc:
        await deps.events.finish(record.ref, Status.FAILED, actor, error=str(exc))
        return Status.FAILED


async def confirm(deps: LandingDeps, record: JobRecord, actor: str) -> list[Asset]:
    """Ask Apiframe for the job: the files its result names, if it completed. A failure ends
    the job; anything else is not ready yet. This is also how an unsigned webhook is checked,
    and how a result of no shape imagedock knows is looked at again before the job fails."""
    assert record.job_id is not None
    try:
        job = await deps.apiframe.get_job(record.job_id)
    except JobNotFound as exc:
        raise PermanentError(f"Apiframe does not know job {record.job_id}") from exc
    except RateLimited as exc:
        raise TransientError(str(exc), retry_after=exc.retry_after) from exc
    except ApiframeError as exc:
        if exc.transient:
            raise TransientError(str(exc)) from exc
        raise PermanentError(f"Apiframe refused to show the job: {exc}") from exc
    await deps.ledger.log(record.ref, record.job_id, actor, "job.confirmed", status=job.status)
    if job.status in ("FAILED", "CANCELLED"):
        reason = job.error or f"Apiframe reports the job {job.status}"
        await deps.events.finish(record.ref, from_apiframe(job.status), actor, error=reason)
        return []
    if job.status != "COMPLETED":  # running, or a status Apiframe has not published yet
        # Still running: whatever triggered this was early or forged. The real webhook or the
        # poller lands it later; failing it here would let a forged hint kill a good job.
        await deps.ledger.transition(
            record.ref, from_apiframe(job.status), actor, progress=job.progress
        )
        return []
    assets = job.assets
    if not assets:
        raise NotReady(f"Apiframe shows the job COMPLETED naming no file: {shape_of(job.result)}")
    await deps.ledger.transition(
        record.ref,
        Status.COMPLETED,
        actor,
        progress=100,
        assets=dumps(assets),
        via="webhook",
        **costed(job.credit_cost),
    )
    return assets


async def store_all(
    deps: LandingDeps, record: JobRecord, assets: list[Asset], actor: str, *, verify: bool = False
) -> Status:
    assert record.job_id is not None
    refused = refused_files(assets, route_named(record.operation), record.model)
    if refused is not None:
        raise PermanentError(refused)
    started = time.monotonic()
    done = {stored.index: stored for stored in record.objects}
    for index, asset in enumerate(assets, start=1):
        if index not in done or (verify and not await still_stored(deps.store, done[index])):
            done[index] = await store_one(deps, record, index, asset, actor)
    objects = [done[index] for index in sorted(done)]
    manifest = {
        "jobId": record.job_id,
        "ref": record.ref,
        "operation": record.operation,
        **({"action": record.action} if record.action else {}),
        **({"parentJobId": record.parent_job_id} if record.parent_job_id else {}),
        "model": record.model,
        "prompt": record.prompt,
        "params": record.params,
        "metadata": record.metadata,
        "objects": [stored.public() for stored in objects],
    }
    key = deps.store.key(record.job_id, "manifest.json")
    # A replay restores a missing manifest; one there already, perhaps written by an earlier
    # version in another shape, is the job's record and is left as it is.
    if not (verify and await deps.store.stat(key) is not None):
        with tracer.start_as_current_span("s3.put", attributes={"imagedock.key": key}):
            await deps.store.put_once(key, json_blob(manifest, {"job-id": record.job_id}))
    # The record as this landing left it, if it moved it: the event is built from it.
    landed = await deps.ledger.move_and_read(record.ref, Status.LANDED, actor, error="")
    if landed is not None:
        took = time.monotonic() - started
        outcome = landed.outcome(time.time())
        counting: list[metrics.Counted] = [metrics.JOBS_LANDED(metric_label(record.model))]
        if landed.via == "poll":
            counting.append(metrics.JOBS_LANDED_VIA_POLL)
        counting += credits_of(landed)
        await deps.ledger.log(
            record.ref,
            record.job_id,
            actor,
            "job.landed",
            counting=tuple(counting),
            observing={metrics.LANDING_DURATION: took, metrics.LANDING_BYTES: outcome["bytes"]},
            **outcome,
            manifest=key,
            landing_ms=round(took * 1000),
        )
    await deps.events.publish_pending(record.ref, actor, landed)
    return Status.LANDED


def credits_of(record: JobRecord) -> list[metrics.Counted]:
    """What the landed job cost, counted by model, route and caller."""
    cost = record.credit_cost
    if not cost:
        return []
    return [
        metrics.CREDITS_BY_MODEL(metric_label(record.model), cost),
        metrics.CREDITS_BY_ROUTE(record.operation, cost),
        metrics.CREDITS_BY_CALLER(record.caller or OPERATOR, cost),
    ]


async def still_stored(store: ObjectStore, stored: StoredObject) -> bool:
    """Whether the object is in S3 as it was landed: its SHA-256 where it carries one (a
    multipart upload is made before its digest is known), else its size."""
    found = await store.stat(stored.key)
    if found is None:
        return False
    if "sha256" in found.metadata:
        return found.metadata["sha256"] == stored.sha256
    return found.size == stored.bytes


async def store_one(
    deps: LandingDeps, record: JobRecord, index: int, asset: Asset, actor: str
) -> StoredObject:
    """Download one file, of the medium its kind promises, and store it under its name."""
    assert record.job_id is not None
    medium, url = asset.kind.medium, asset.url
    metadata = {
        "job-id": record.job_id,
        "source-url": url,
        "model": record.model,
        "kind": asset.kind.value,
    }
    writer = ObjectWriter(deps.store, record.job_id, asset.name, metadata)
    try:
        about = {"imagedock.index": index, "imagedock.kind": asset.kind.value}
        with tracer.start_as_current_span("file.download", attributes=about) as span:
            download = await deps.downloader.fetch(url, medium, writer)
            span.set_attribute("imagedock.bytes", download.size)
        # Written with the object's own entry, one round trip for both.
        downloaded = Noted(
            f"{medium}.downloaded",
            {
                "index": index,
                "kind": asset.kind,
                "url": url,
                "bytes": download.size,
                "sha256": download.sha256,
            },
            time.time(),
        )
        with tracer.start_as_current_span("s3.put", attributes={"imagedock.index": index}):
            await writer.finish(download)
    except BaseException:
        await writer.abort()
        raise
    key = writer.key
    stored = StoredObject(
        index,
        deps.store.bucket,
        key,
        download.size,
        download.sha256,
        download.content_type,
        url,
        kind=asset.kind.value,
        number=asset.number if asset.number != index else None,
        track_id=asset.track_id,
    )
    detail = {"index": index, "kind": asset.kind, "key": key, "bytes": download.size}
    stored_event = f"{medium}.stored"
    counting = (metrics.FILES_LANDED(asset.kind.value),)
    await deps.ledger.add_object(
        record.ref,
        record.job_id,
        stored,
        actor,
        stored_event,
        counting=counting,
        noted=(downloaded,),
        **detail,
    )
    return stored
