"""Apiframe's v2 request and response bodies, as imagedock reads and writes them."""

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from worker.apiframe.catalog import (
    ACTION_PROMPT_MAX,
    EVERY_MODEL,
    GENERATE,
    OPERATIONS,
    PARAMS_KEYS,
    Model,
    Operation,
    operation_of,
)
from worker.apiframe.results import Asset, assets_of
from worker.validation import FieldProblem

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
PROMPT_LONGEST = max(model.prompt_max for model in EVERY_MODEL.values())


class S3Reference(BaseModel):
    """An object of imagedock's own bucket, named where a URL is taken (see `references`)."""

    model_config = ConfigDict(extra="forbid")

    s3: str = Field(min_length=1, max_length=1024)


class GrokParams(BaseModel):
    """Grok Imagine's optional parameters: a reference image and an aspect ratio."""

    model_config = ConfigDict(extra="forbid")

    image: HttpUrl | S3Reference | None = None
    aspect_ratio: AspectRatio | None = None

    @field_validator("image", mode="before")
    @classmethod
    def _url_or_reference(cls, value: Any) -> Any:
        """One message for either shape, not one per member of the union."""
        if value is None or isinstance(value, dict):
            return value
        if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
            raise ValueError('must be an http(s) URL, or {"s3": KEY} of an object imagedock landed')
        return value

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


ACTION_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # (required, optional)
    "upsample": (frozenset({"index"}), frozenset()),
    "variation": (frozenset({"index"}), frozenset()),
    "inpaint": (frozenset({"mask"}), frozenset({"prompt"})),
    "outpaint": (frozenset({"zoomRatio"}), frozenset()),
    "pan": (frozenset({"direction"}), frozenset()),
    "extend": (frozenset(), frozenset({"continueAt", "index", "trackId", "prompt", "style",
                                       "title", "negative_tags"})),
    "cover": (frozenset(), frozenset({"audio_weight", "index", "trackId", "prompt", "style",
                                      "title", "negative_tags"})),
    "add_vocals": (frozenset({"prompt"}), frozenset({"index", "trackId", "style", "title",
                                                     "negative_tags"})),
    "stems": (frozenset(), frozenset({"index", "trackId"})),
}  # fmt: skip


class ApiframeRequest(BaseModel):
    """A submission to any of Apiframe's job routes, named by `operation` (its path after
    `/v2/`, `images/generate` by default). A model route takes a model of its own, the prompt
    if it takes one, and the model's params block, named by the model's own key (`fluxParams`,
    `grokImagineParams` or Grok's other spelling `grokParams`) or simply `params`. An action
    route takes `action`, `parentJobId` and the action's own fields (`index`, `trackId`,
    `mask`...), kept in `params`. imagedock checks what every route shares and Grok's two
    params; Apiframe's 400 `details` tell the rest."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    operation: str = GENERATE
    prompt: str | None = Field(default=None, min_length=1, max_length=PROMPT_LONGEST)
    model: str | None = None
    params: dict[str, Any] | None = None
    action: str | None = None
    parent_job_id: str | None = Field(default=None, alias="parentJobId", max_length=64)
    webhook_url: str | None = None
    webhook_events: list[EventName] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        """One params block, under `params`; an action's own fields gathered there too."""
        if not isinstance(data, dict):
            return data
        operation = OPERATIONS.get(str(data.get("operation", GENERATE)))
        if operation is not None and operation.acts_on_parent:
            fields = ACTION_FIELDS.get(str(data.get("action")))
            own = (fields[0] | fields[1]) - {"prompt"} if fields else frozenset()
            gathered = {name: data[name] for name in own if name in data}
            if gathered and "params" in data:
                raise FieldProblem("params", "send an action's fields beside it or in params")
            rest = {name: value for name, value in data.items() if name not in gathered}
            return {**rest, "params": gathered} if gathered else rest
        blocks = [key for key in data if key == "params" or key in PARAMS_KEYS | {GROK_ALIAS}]
        if len(blocks) > 1:
            raise ValueError(f"send one params block, not {', '.join(blocks)}")
        if not blocks or blocks[0] == "params":
            return data
        key = blocks[0]
        default = MODEL if operation is not None and operation.path == GENERATE else ""
        model = EVERY_MODEL.get(str(data.get("model", default)))
        if model is not None:
            grok = {GROK_ALIAS} if model.name == MODEL else set()
            if key not in {model.params_key} | grok:
                message = f"{key} is not {model.name}'s params block: send {model.params_key}"
                raise FieldProblem(key, message)
        rest = {name: value for name, value in data.items() if name != key}
        return {**rest, "params": data[key]}

    @model_validator(mode="after")
    def _fits_the_route(self) -> "ApiframeRequest":
        operation = OPERATIONS.get(self.operation)
        if operation is None:
            known = ", ".join(OPERATIONS)
            raise FieldProblem(
                "operation", f"unknown operation {self.operation[:60]!r}: one of {known}"
            )
        if operation.acts_on_parent:
            return self._fits_the_action(operation)
        if self.model is None and operation.path == GENERATE:
            self.model = MODEL
        if self.action is not None or self.parent_job_id is not None:
            raise FieldProblem("action", f"{operation.path} takes no action or parentJobId")
        model = operation.models.get(self.model or "")
        if model is None:
            elsewhere = operation_of(self.model or "")
            if elsewhere is not None:
                raise FieldProblem(
                    "model", f"{self.model} is a model of {elsewhere}, not {operation.path}"
                )
            raise FieldProblem(
                "model",
                f"unknown model {str(self.model)[:60]!r} for {operation.path}: "
                f"`imagedock models --operation {operation.path}` lists them",
            )
        if operation.prompt and self.prompt is None:
            raise FieldProblem("prompt", f"{operation.path} needs a prompt")
        if not operation.prompt and self.prompt is not None:
            raise FieldProblem(
                "prompt", f"{operation.path} takes no prompt (it goes in {model.params_key})"
            )
        if self.prompt is not None and len(self.prompt) > model.prompt_max:
            raise FieldProblem(
                "prompt", f"{model.name} takes a prompt of at most {model.prompt_max} characters"
            )
        if model.params_required and not self.params:
            raise FieldProblem(model.params_key, f"{model.name} needs its {model.params_key} block")
        if model.name == MODEL and self.params is not None:
            try:
                self.params = GrokParams.model_validate(self.params).wire()
            except (
                ValidationError
            ) as exc:  # named by its path from the body's top, as Apiframe does
                first = exc.errors()[0]
                path = ".".join(str(part) for part in (model.params_key, *first["loc"]))
                cause = first.get("ctx", {}).get("error")
                raise FieldProblem(path, str(cause) if cause else first["msg"]) from None
        return self

    def _fits_the_action(self, operation: Operation) -> "ApiframeRequest":
        if self.model is not None:
            raise FieldProblem("model", f"{operation.path} takes no model: it acts on its parent's")
        if self.action not in operation.actions:
            raise FieldProblem("action", f"{operation.path} takes an action: one of "
                             f"{', '.join(operation.actions)}")  # fmt: skip
        if not self.parent_job_id:
            raise FieldProblem(
                "parentJobId", f"{operation.path} needs parentJobId: the job it acts on"
            )
        required, optional = ACTION_FIELDS[self.action]
        # `action` and `parentJobId` are fields of their own, and so is the prompt.
        unknown = sorted(set(self.params or {}) - ((required | optional) - {"prompt"}))
        if unknown:
            raise FieldProblem(unknown[0], f"{self.action} takes no {', '.join(unknown)}")
        given = set(self.params or {}) | ({"prompt"} if self.prompt is not None else set())
        missing = sorted(required - given)
        if missing:
            raise FieldProblem(missing[0], f"{self.action} needs {', '.join(missing)}")
        if self.prompt is not None and "prompt" not in required | optional:
            raise FieldProblem("prompt", f"{self.action} takes no prompt")
        longest = ACTION_PROMPT_MAX.get(self.action, 0)
        if self.prompt is not None and len(self.prompt) > longest:
            raise FieldProblem(
                "prompt", f"{self.action} takes a prompt of at most {longest} characters"
            )
        return self

    @property
    def route(self) -> Operation:
        return OPERATIONS[self.operation]

    @property
    def catalogued(self) -> Model | None:
        return self.route.models.get(self.model or "")


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
    def assets(self) -> list[Asset]:
        """The files the result names (see `results`); [] while there are none."""
        return assets_of(self.result)


class JobList(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = Field(default=None, alias="nextCursor")
    has_more: bool = Field(default=False, alias="hasMore")


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
    credit_cost: int | None = Field(default=None, alias="creditCost")

    @field_validator("progress", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        """A JSON number (25 or 25.0), as the schema says: not `true`, not `"25"`."""
        if isinstance(value, bool | str):
            raise ValueError("progress is a number from 0 to 100")
        return value

    @property
    def assets(self) -> list[Asset]:
        """The files the result names (see `results`); [] while there are none."""
        return assets_of(self.result)
