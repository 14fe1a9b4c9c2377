"""Apiframe's ten job routes (`OPERATIONS`, named by their path after `/v2/`) and every model
behind each: the name of its params block, the most files one job returns, and the longest
prompt it takes. Adding a model is one line. The action routes take no model: they act on a
parent job, named by `parentJobId`.
"""

from collections.abc import Mapping
from dataclasses import dataclass

PROMPT_MAX = 2000


@dataclass(frozen=True)
class Model:
    name: str
    params_key: str
    max_images: int = 4  # the most files of its kind a job returns; unpublished for most images
    prompt_max: int = PROMPT_MAX
    params_required: bool = False


def family(key: str, *names: str, prompt_max: int = PROMPT_MAX, max_images: int = 4) -> list[Model]:
    """Models that share a params block."""
    return [Model(name, key, max_images, prompt_max) for name in names]


def one_file(key: str, *names: str) -> list[Model]:
    """Models that take no prompt and return one file, each with a block of its own."""
    return [Model(name, key, 1, 0, params_required=True) for name in names]


MODELS: dict[str, Model] = {
    model.name: model
    for model in [
        Model("grok-imagine-image", "grokImagineParams"),
        Model("midjourney", "midjourneyParams"),
        *family(
            "nanoBananaParams",
            "nano-banana",
            "nano-banana-pro",
            "nano-banana-2",
            "nano-banana-2-lite",
        ),
        *family(
            "fluxParams",
            "flux-1.1-pro",
            "flux-1.1-pro-ultra",
            "flux-2-pro",
            "flux-2-dev",
            "flux-2-flex",
            "flux-2-max",
        ),
        Model("flux-lora", "fluxLoraParams", params_required=True),
        *family(
            "seedreamParams",
            "seedream-3",
            "seedream-3.1",
            "seedream-4",
            "seedream-4.5",
            "seedream-5-lite",
            "seedream-5-pro",
        ),
        *family(
            "ideogramParams",
            "ideogram-v2",
            "ideogram-v2-turbo",
            "ideogram-v2a",
            "ideogram-v2a-turbo",
            "ideogram-v3-balanced",
            "ideogram-v3-turbo",
            "ideogram-v3-quality",
            "ideogram-v4-balanced",
            "ideogram-v4-turbo",
            "ideogram-v4-quality",
        ),
        Model("ideogram-character", "ideogramParams", params_required=True),
        *family(
            "stableDiffusionParams",
            "stable-diffusion-3.5-large",
            "stable-diffusion-3.5-large-turbo",
            "stable-diffusion-3.5-medium",
            "stable-diffusion-3",
        ),
        *family(
            "imagenParams",
            "imagen-3",
            "imagen-3-fast",
            "imagen-4",
            "imagen-4-ultra",
            "imagen-4-fast",
        ),
        *family("dalleParams", "dall-e-3", "dall-e-2"),
        Model("gpt-image-1.5", "gptImageParams", max_images=10),
        Model("gpt-image-2", "gptImage2Params", max_images=10),
        Model("kling-image", "klingImageParams"),
        Model("qwen-image", "qwenImageParams"),
        *family("qwenImage2Params", "qwen-image-2", "qwen-image-2-pro"),
        Model("wan-image-2.6", "wanImageParams"),
        *family("wanImage27Params", "wan-image-2.7", "wan-image-2.7-pro", prompt_max=5000),
        Model("reve-create", "reveParams"),
    ]
}


VIDEO = 4000  # the longest prompt most video models take
VIDEO_MODELS = {
    model.name: model
    for model in [
        *family("klingParams", "kling-2.1", "kling-2.1-master", "kling-2.5-turbo-pro",
                "kling-2.6", "kling-3.0", "kling-3.0-omni", prompt_max=VIDEO, max_images=1),
        Model("kling-3.0-motion-control", "klingParams", 1, VIDEO, params_required=True),
        *family("soraParams", "sora-2", "sora-2-pro", prompt_max=VIDEO, max_images=1),
        *family("seedanceParams", "seedance-1-lite", "seedance-1-pro", "seedance-1-pro-fast",
                "seedance-1.5-pro", "seedance-2", "seedance-2-fast", "seedance-2-mini",
                "seedance-2.5", prompt_max=VIDEO, max_images=1),
        Model("midjourney-video", "midjourneyVideoParams", 1, VIDEO, params_required=True),
        *family("veoParams", "veo-2", "veo-3", "veo-3-fast", "veo-3.1", "veo-3.1-fast",
                "veo-3.1-lite", prompt_max=VIDEO, max_images=1),
        Model("grok-imagine-video", "grokImagineVideoParams", 1, 5000),
        *family("hailuoParams", "hailuo-02", "hailuo-2.3", "hailuo-2.3-fast", "hailuo-03",
                max_images=1),
        *family("lumaParams", "luma-ray-2", "luma-ray-flash-2", prompt_max=VIDEO, max_images=1),
        *family("wanParams", "wan-2.5", "wan-2.5-fast", "wan-2.6", "wan-2.6-flash",
                prompt_max=VIDEO, max_images=1),
        Model("wan-2.7", "wan27Params", 1, 5000),
        Model("wan-2.7-r2v", "wan27R2vParams", 1, 5000, params_required=True),
        Model("happyhorse-1.0", "happyhorse10Params", 1, 2500),
        Model("happyhorse-1.1", "happyhorse11Params", 1, 2500),
        *family("runwayParams", "runway-gen4-turbo", "runway-gen4.5", prompt_max=VIDEO,
                max_images=1),
    ]
}  # fmt: skip
MUSIC_MODELS = {  # each track is an audio file and its cover art
    model.name: model
    for model in [
        Model("suno", "sunoParams", 2, 5000),
        Model("udio", "udioParams", 2, 5000),
        Model("producer", "producerParams", 2, 5000),
        *family("lyriaParams", "lyria-3-clip", "lyria-3-pro", prompt_max=5000, max_images=1),
        Model("elevenlabs-music", "elevenlabsParams", 1, 5000),
        Model("mureka", "murekaParams", 3, 1024),
    ]
}


@dataclass(frozen=True)
class Operation:
    """One of Apiframe's job routes: `POST /v2/<path>`."""

    path: str
    makes: str  # "image", "video" or "music": what its jobs return
    models: Mapping[str, Model]  # empty for an action route
    actions: tuple[str, ...] = ()  # an action route's actions, each on a parent job
    prompt: bool | None = True  # True: required; False: not taken; None: as the action says
    most_files: int = 4  # for an action route, the most files of its kind one job returns
    poll_every: float = 2.0  # seconds between polls, as Apiframe advises for what it makes
    lasts: float = 1.0  # how many image job deadlines its jobs may run (IMAGEDOCK_JOB_DEADLINE)

    @property
    def acts_on_parent(self) -> bool:
        return bool(self.actions)

    def most(self, model: str) -> int:
        """The most files of the route's main kind one job of `model` returns; for a model it
        does not catalogue, the most any of its models returns."""
        known = self.models.get(model)
        if known is not None:
            return known.max_images
        return max((m.max_images for m in self.models.values()), default=self.most_files)


GENERATE = "images/generate"
OPERATIONS: dict[str, Operation] = {
    operation.path: operation
    for operation in [
        Operation(GENERATE, "image", MODELS),
        Operation("images/edit", "image",
                  {m.name: m for m in one_file("fluxFillParams", "flux-fill-pro")}, prompt=False),
        Operation("images/upscale", "image",
                  {m.name: m for m in [*one_file("topazUpscaleParams", "topaz-image-upscale"),
                                       *one_file("clarityUpscaleParams", "clarity-upscale")]},
                  prompt=False),
        Operation("images/background-remove", "image",
                  {m.name: m for m in [*one_file("briaBgRemoveParams", "bria-bg-remove"),
                                       *one_file("lab851BgRemoveParams", "851-bg-remove")]},
                  prompt=False),
        Operation("images/midjourney/action", "image", {},
                  ("upsample", "variation", "inpaint", "outpaint", "pan"), prompt=None),
        Operation("videos/generate", "video", VIDEO_MODELS, poll_every=5.0, lasts=4.0),
        Operation("videos/edit", "video",
                  {"wan-2.7-videoedit": Model("wan-2.7-videoedit", "wan27VideoeditParams", 1,
                                              5000, params_required=True)},
                  poll_every=5.0, lasts=4.0),
        Operation("videos/upscale", "video",
                  {m.name: m for m in one_file("topazVideoParams", "topaz-video-upscale")},
                  prompt=False, poll_every=5.0, lasts=8.0),  # no limit on the input's length
        Operation("music/generate", "music", MUSIC_MODELS, poll_every=5.0, lasts=2.0),
        Operation("music/suno/action", "music", {}, ("extend", "cover", "add_vocals", "stems"),
                  prompt=None, most_files=2, poll_every=5.0, lasts=2.0),
    ]
}  # fmt: skip
LONGEST_LASTING = max(operation.lasts for operation in OPERATIONS.values())
ACTION_PROMPT_MAX = {"inpaint": 2000, "extend": 5000, "cover": 5000, "add_vocals": 5000}
# Midjourney's grid of four comes from a generation and from every action but `upsample`; the
# grid actions (upsample, variation) take a grid, the others the one image an upsample made.
MIDJOURNEY_GRID_MAKERS = (None, "variation", "inpaint", "outpaint", "pan")


def action_refused(
    operation: str, action: str, parent_model: str, parent_action: str | None
) -> str | None:
    """Why `action` is not available for a parent job of `parent_model` made by
    `parent_action` (None for a generation), or None if it is."""
    if operation == "images/midjourney/action":
        if parent_model != "midjourney":
            return f"{action} acts on a Midjourney job, not {parent_model or 'this one'}"
        if action in ("upsample", "variation") and parent_action not in MIDJOURNEY_GRID_MAKERS:
            return f"{action} acts on a grid of four; this job made one image"
        if action not in ("upsample", "variation") and parent_action != "upsample":
            return f"{action} acts on an upsampled image, not a grid"
    if operation == "music/suno/action":
        if parent_model != "suno":
            return f"{action} acts on a Suno job, not {parent_model or 'this one'}"
        if parent_action == "stems":
            return f"{action} acts on tracks; this job made stems"
    return None


EVERY_MODEL = {name: model for op in OPERATIONS.values() for name, model in op.models.items()}


def route_named(path: str) -> Operation:
    """The route a record names; one recorded before routes were, `images/generate`."""
    return OPERATIONS.get(path) or OPERATIONS[GENERATE]


def operation_of(model: str) -> str | None:
    """The route a model belongs to, if any: to tell a caller who sent it to another."""
    return next((op.path for op in OPERATIONS.values() if model in op.models), None)


def metric_label(model: str) -> str:
    """The model as a metric label: a catalogued name, else `other`, so labels stay few."""
    return model if model in EVERY_MODEL else "other"


PARAMS_KEYS = frozenset(model.params_key for model in EVERY_MODEL.values())
