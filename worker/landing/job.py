"""Landing a completed job: its images and a manifest in S3, then LANDED and its event.

Running it again for a landed job uploads nothing and changes nothing: images already recorded are
skipped, S3 writes are create-only, and the ledger only moves forward. A replay (`verify=True`)
also checks that every recorded object is still in S3 and restores any that is not.
"""

import time
from dataclasses import dataclass

from worker import metrics
from worker.apiframe import ApiframeClient, ApiframeError, JobNotFound, RateLimited
from worker.apiframe.catalog import MODELS, MOST_IMAGES, metric_label
from worker.events import Events
from worker.landing.download import Downloader
from worker.landing.errors import PermanentError, TransientError
from worker.landing.storage import Blob, ObjectStore, json_blob
from worker.ledger.ledger import Ledger
from worker.ledger.records import JobRecord, StoredObject
from worker.status import FAILURES, Status, from_apiframe


@dataclass(frozen=True)
class LandingDeps:
    """What landing needs, made once per worker process."""

    ledger: Ledger
    events: Events
    apiframe: ApiframeClient
    downloader: Downloader
    store: ObjectStore


def most_images(model: str) -> int:
    """The most images a job of `model` may land; for a model not catalogued, any model's."""
    known = MODELS.get(model)
    return known.max_images if known else MOST_IMAGES


def landing_timeout(base: float, model: str) -> float:
    """`base` covers four images, as most models return at most; more images, more time."""
    return base * max(1.0, most_images(model) / 4)


class NotReady(TransientError):
    """Apiframe shows the job COMPLETED but without images yet: check again a few times."""


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
    if record.status == Status.LANDED and verify:
        await store_all(deps, record, [o.source_url for o in record.objects], actor, verify=True)
    if record.status == Status.LANDED or record.status in FAILURES:
        await deps.events.publish_pending(record.ref, actor)  # owed if a crash came between
        return record.status
    try:
        urls = record.result_urls or await confirm(deps, record, actor)
        if not urls:
            return (await deps.ledger.get(record.ref) or record).status
        return await store_all(deps, record, urls, actor)
    except PermanentError as exc:
        await deps.events.finish(record.ref, Status.FAILED, actor, error=str(exc))
        return Status.FAILED


async def confirm(deps: LandingDeps, record: JobRecord, actor: str) -> list[str]:
    """Ask Apiframe for the job: the result URLs if it completed with images. A failure ends the
    job; anything else is not ready yet. This is also how an unsigned webhook is checked."""
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
    if not job.image_urls:
        raise NotReady("Apiframe shows the job COMPLETED without images")
    await deps.ledger.transition(
        record.ref, Status.COMPLETED, actor, progress=100, result_urls=job.image_urls, via="webhook"
    )
    return job.image_urls


async def store_all(
    deps: LandingDeps, record: JobRecord, urls: list[str], actor: str, *, verify: bool = False
) -> Status:
    assert record.job_id is not None
    most = most_images(record.model)
    if len(urls) > most:
        raise PermanentError(f"Apiframe returned {len(urls)} images; {record.model} returns {most}")
    started = time.monotonic()
    done = {stored.index: stored for stored in record.objects}
    for index, url in enumerate(urls, start=1):
        if index not in done or (verify and not await still_stored(deps.store, done[index])):
            done[index] = await store_one(deps, record, index, url, actor)
    objects = [done[index] for index in sorted(done)]
    manifest = {
        "jobId": record.job_id,
        "ref": record.ref,
        "model": record.model,
        "prompt": record.prompt,
        "params": record.params,
        "metadata": record.metadata,
        "objects": [stored.public() for stored in objects],
    }
    key = deps.store.key(record.job_id, "manifest.json")
    await deps.store.put_once(key, json_blob(manifest, {"job-id": record.job_id}))
    landed = None  # the record as this landing left it, if it moved it: the event is built from it
    if await deps.ledger.transition(record.ref, Status.LANDED, actor, error=""):
        landed = await deps.ledger.get(record.ref) or record
        took = time.monotonic() - started
        outcome = landed.outcome(time.time())
        counting: list[metrics.Counted] = [metrics.JOBS_LANDED(metric_label(record.model))]
        if landed.via == "poll":
            counting.append(metrics.JOBS_LANDED_VIA_POLL)
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


async def still_stored(store: ObjectStore, stored: StoredObject) -> bool:
    return (await store.head(stored.key)).get("sha256") == stored.sha256


async def store_one(
    deps: LandingDeps, record: JobRecord, index: int, url: str, actor: str
) -> StoredObject:
    assert record.job_id is not None
    download = await deps.downloader.fetch(url)
    try:
        await deps.ledger.log(
            record.ref,
            record.job_id,
            actor,
            "image.downloaded",
            index=index,
            url=url,
            bytes=download.size,
            sha256=download.sha256,
        )
        key = deps.store.key(record.job_id, f"{index}.{download.extension}")
        metadata = {
            "job-id": record.job_id,
            "source-url": url,
            "sha256": download.sha256,
            "model": record.model,
        }
        await deps.store.put_once(key, Blob.of(download, metadata))
    finally:
        download.close()
    stored = StoredObject(
        index, deps.store.bucket, key, download.size, download.sha256, download.content_type, url
    )
    detail = {"index": index, "key": key, "bytes": download.size}
    await deps.ledger.add_object(record.ref, record.job_id, stored, actor, "image.stored", **detail)
    return stored
