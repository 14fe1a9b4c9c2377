"""Apiframe's v2 request and response bodies, as imagedock reads and writes them."""

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, HttpUrl, StringConstraints

MODEL = "grok-imagine-image"
# How long Apiframe replays a submission for a repeated Idempotency-Key.
IDEMPOTENCY_WINDOW = 24 * 3600
# Apiframe's job ids are UUIDs; nothing else may reach an S3 key or a `/v2/jobs/{id}` path.
JobId = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
]
AspectRatio = Literal["1:1", "2:3", "3:2", "16:9", "9:16"]
EventName = Literal["progress", "completed", "failed"]
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


class GrokParams(BaseModel):
    """Grok Imagine's optional parameters: a reference image and an aspect ratio."""

    model_config = ConfigDict(extra="forbid")

    image: HttpUrl | None = None
    aspect_ratio: AspectRatio | None = None

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class GenerateRequest(BaseModel):
    """A submission; callers may name the params block `grokParams` or `grokImagineParams`."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=2000)
    model: str = MODEL
    params: GrokParams | None = Field(
        default=None, validation_alias=AliasChoices("grokImagineParams", "grokParams", "params")
    )
    webhook_url: str | None = None
    webhook_events: list[EventName] | None = Field(default=None, min_length=1)


class Submission(BaseModel):
    """Apiframe's 202: the job id and, for a replayed Idempotency-Key, possibly a later status."""

    job_id: JobId = Field(alias="jobId")
    status: str


class Job(BaseModel):
    """`GET /v2/jobs/{id}`."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: JobId
    status: str
    model: str | None = None
    progress: int | None = None
    result: Any = None
    error: str | None = None
    credit_cost: int | None = Field(default=None, alias="creditCost")
    webhook_status: str | None = Field(default=None, alias="webhookStatus")
    created_at: str | None = Field(default=None, alias="createdAt")
    completed_at: str | None = Field(default=None, alias="completedAt")
    expired: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def image_urls(self) -> list[str]:
        return result_urls(self.result)


class JobPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(default=None, alias="nextCursor")
    has_more: bool = Field(default=False, alias="hasMore")


def result_urls(result: Any) -> list[str]:
    """The image URLs of a result in any published shape: `{"images": [...]}`, a bare URL, or
    nothing. An empty list means "not ready": the caller re-checks before calling it a failure."""
    if isinstance(result, str):
        return [result] if result.strip() else []
    if isinstance(result, dict):
        images = result.get("images")
        if isinstance(images, str):
            return [images] if images.strip() else []
        if isinstance(images, list):
            return [url for url in images if isinstance(url, str) and url.strip()]
    return []


class WebhookEvent(BaseModel):
    """A webhook body: not the job object (`jobId`, not `id`)."""

    model_config = ConfigDict(extra="allow")

    job_id: JobId = Field(alias="jobId")
    status: Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"]
    event: str | None = None
    progress: int | None = Field(default=None, ge=0, le=100)
    result: Any = None
    error: str | None = None
    model: str | None = None

    @property
    def image_urls(self) -> list[str]:
        return result_urls(self.result)
