"""Every image model behind Apiframe's `POST /v2/images/generate`: the name of its params block,
the most images one job returns, and the longest prompt it takes. Adding a model is one line."""

from dataclasses import dataclass

PROMPT_MAX = 2000


@dataclass(frozen=True)
class Model:
    name: str
    params_key: str
    max_images: int = 4  # unpublished for most: up to 4, as Midjourney returns
    prompt_max: int = PROMPT_MAX
    params_required: bool = False


def family(key: str, *names: str, prompt_max: int = PROMPT_MAX) -> list[Model]:
    """Models that share a params block."""
    return [Model(name, key, prompt_max=prompt_max) for name in names]


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


def metric_label(model: str) -> str:
    """The model as a metric label: a catalogued name, else `other`, so labels stay few."""
    return model if model in MODELS else "other"


PARAMS_KEYS = frozenset(model.params_key for model in MODELS.values())
MOST_IMAGES = max(model.max_images for model in MODELS.values())
