"""Every knob of the Apiframe simulator. Tests change them on a running simulator."""

from dataclasses import dataclass, field
from typing import Literal

from worker.apiframe.signatures import Variant

ImageFormat = Literal["png", "jpeg", "webp"]
ResultShape = Literal["images", "string", "empty", "unknown"]
CdnContent = Literal["image", "html"]


@dataclass
class SimulatorConfig:
    # Keys: with none configured, any key starting with `afk_` is accepted.
    api_keys: tuple[str, ...] = ()
    inactive_keys: tuple[str, ...] = ()
    team_admin_keys: tuple[str, ...] = ()  # keys that may list with scope=team
    # Apiframe does not say whether a 400 binds the Idempotency-Key to the refused body.
    bind_key_on_400: bool = False
    # Which spelling of each body field this Apiframe accepts: its sources give two of each.
    params_field: Literal["grokImagineParams", "grokParams"] = "grokImagineParams"
    webhook_field: Literal["webhookUrl", "webhook_url"] = "webhookUrl"
    credits: int = 1_000_000
    credit_cost: int = 10
    # Submit limits per API key (`simulator.limits`): None is no limit.
    submit_rate: float | None = None
    max_in_flight: int | None = None

    # Lifecycle: Grok averages about 8 s.
    queued_seconds: float = 1.0
    processing_seconds: float = 7.0
    progress_steps: int = 3
    failure_rate: float = 0.0
    failure_message: str = "The prompt was refused by the content policy."
    cancel_rate: float = 0.0  # jobs that end CANCELLED (no cancel endpoint exists)
    stall: bool = False  # jobs stay PROCESSING for ever

    # Results.
    images_per_job: int = 1
    image_format: ImageFormat = "png"
    image_long_side: int = 256
    image_bytes: int = 0  # pad every file to at least this size; 0 keeps the natural size
    video_bytes: int = 256 * 1024  # the size of every video (an mp4)
    audio_bytes: int = 64 * 1024  # the size of every track and stem (a wav)
    wrong_kind: bool = False  # serve a PNG where a video or a track is promised
    file_ttl_seconds: float = 24 * 3600
    result_base_url: str | None = None  # where result URLs point; default: this server's CDN route

    # Webhook delivery faults.
    signature_variant: Variant = "A"
    drop_rate: float = 0.0
    duplicates: int = 1
    reorder: bool = False  # a stale progress event after the terminal one
    delay_seconds: float = 0.0
    early: bool = False  # the terminal webhook arrives before the submit's 202
    unsigned: bool = False
    wrong_signature: bool = False
    webhook_result_shape: ResultShape = "images"
    job_result_shape: ResultShape = "images"
    retry_schedule: tuple[float, ...] = ()  # waits before re-sending a non-2xx delivery
    webhook_timeout_seconds: float = 10.0

    # CDN faults.
    cdn_fail_first: int = 0  # 503 for the first n requests of each file
    cdn_chunk_delay: float = 0.0  # slow bodies: a pause between 64 KiB chunks
    cdn_truncate: bool = False  # declare the full length, send half
    cdn_ranges: bool = True  # serve `Range: bytes=N-` requests, as CDNs do
    cdn_content: CdnContent = "image"

    response_delay_seconds: float = 0.0  # a slow API, to exercise client timeouts
    seed: int | None = None
    faults: list["Fault"] = field(default_factory=list)


@dataclass
class Fault:
    """An injected answer for the next `times` requests whose path starts with `path`."""

    status: int
    times: int = 1
    path: str = "/v2/"
    retry_after: str = "1"
