"""Apiframe's v2 request and response bodies, as imagedock reads and writes them."""

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    field_validator,
    model_validator,
)

from worker.apiframe.catalog import MODELS, PARAMS_KEYS, Model

MODEL = "grok-imagine-image"
GROK_ALIAS = "grokParams"  # the params block's other published spelling
# How long Apiframe replays a submission for a repeated Idempotency-Key.
IDEMPOTENCY_WINDOW = 24 * 3600
# Apiframe's job ids are UUIDs; nothing else may reach an S3 key or a `/v2/jobs/{id}` path.
JobId = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
]
AspectRatio = Literal["1:1", "2:3", "3:2", "16:9", "9:16"]
EventName = Literal["progress", "completed", "failed"]
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


class GrokParams(BaseModel):
    """Grok Imagine's optional parameters: a reference image and an aspect ratio."""

    model_config = ConfigDict(extra="forbid")

    image: HttpUrl | None = None
    aspect_ratio: AspectRatio | None = None

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class GenerateRequest(BaseModel):
    """A submission for any model on the route. Callers name the params block by the model's
    own key (`fluxParams`, `grokImagineParams` or Grok's other spelling `grokParams`) or simply
    `params`. imagedock checks what every model shares (a known model, the prompt's length, the
    params block's name) and Grok's two params; Apiframe's 400 `details` tell the rest."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=max(m.prompt_max for m in MODELS.values()))
    model: str = MODEL
    params: dict[str, Any] | None = None
    webhook_url: str | None = None
    webhook_events: list[EventName] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_params_block(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        blocks = [key for key in data if key == "params" or key in PARAMS_KEYS | {GROK_ALIAS}]
        if len(blocks) > 1:
            raise ValueError(f"send one params block, not {', '.join(blocks)}")
        if not blocks or blocks[0] == "params":
            return data
        key, model = blocks[0], MODELS.get(str(data.get("model", MODEL)))
        if model is not None:
            grok = {GROK_ALIAS} if model.name == MODEL else set()
            if key not in {model.params_key} | grok:
                message = f"{key} is not {model.name}'s params block: send {model.params_key}"
                raise ValueError(message)
        rest = {name: value for name, value in data.items() if name != key}
        return {**rest, "params": data[key]}

    @model_validator(mode="after")
    def _fits_the_model(self) -> "GenerateRequest":
        model = MODELS.get(self.model)
        if model is None:
            raise ValueError(f"unknown model {self.model[:60]!r}: `imagedock models` lists them")
        if len(self.prompt) > model.prompt_max:
            raise ValueError(
                f"{model.name} takes a prompt of at most {model.prompt_max} characters"
            )
        if model.params_required and not self.params:
            raise ValueError(f"{model.name} needs its {model.params_key} block")
        if model.name == MODEL and self.params is not None:
            self.params = GrokParams.model_validate(self.params).wire()
        return self

    @property
    def catalogued(self) -> Model:
        return MODELS[self.model]


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
        return self.status in FINISHED

    @property
    def image_urls(self) -> list[str]:
        return result_urls(self.result)


class JobList(BaseModel):
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

    @field_validator("progress", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """A JSON number (25 or 25.0), as the schema says: not `true`, not `"25"`."""
        if isinstance(value, bool | str):
            raise ValueError("progress is a number from 0 to 100")
        return value

    @property
    def image_urls(self) -> list[str]:
        return result_urls(self.result)
