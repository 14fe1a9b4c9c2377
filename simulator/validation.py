"""Strict validation of `POST /v2/images/generate` bodies, with Apiframe's error shapes."""

from typing import Any
from urllib.parse import urlsplit

from simulator.config import SimulatorConfig

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "16:9", "9:16")
EVENTS = ("progress", "completed", "failed")
MODELS = ("grok-imagine-image",)


class BodyError(Exception):
    def __init__(self, error: str, details: dict[str, list[str]]) -> None:
        super().__init__(error)
        self.error = error
        self.details = details


def is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def validate_submission(body: Any, config: SimulatorConfig) -> dict[str, Any]:
    """The accepted body, or BodyError naming every problem by its field path."""
    if not isinstance(body, dict):
        raise BodyError("Request body must be a JSON object", {"": ["Expected object"]})
    allowed = {"prompt", "model", "webhookEvents", config.webhook_field, config.params_field}
    unknown = sorted(set(body) - allowed)
    if unknown:
        names = ", ".join(f"'{key}'" for key in unknown)
        raise BodyError(
            f"Unrecognized keys: {names}",
            {"": [f"Unrecognized key(s) in object: {names}"]},
        )
    details: dict[str, list[str]] = {}
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= 2000:
        details["prompt"] = ["Required string of 1 to 2000 characters"]
    if "model" in body and body["model"] not in MODELS:
        details["model"] = [f"Unsupported model; expected one of {', '.join(MODELS)}"]
    if config.webhook_field in body and not is_url(body[config.webhook_field]):
        details[config.webhook_field] = ["Invalid url"]
    events = body.get("webhookEvents")
    if "webhookEvents" in body and (
        not isinstance(events, list) or not events or any(e not in EVENTS for e in events)
    ):
        details["webhookEvents"] = [f"Non-empty list of {', '.join(EVENTS)}"]
    params = body.get(config.params_field, {})
    if not isinstance(params, dict):
        details[config.params_field] = ["Expected object"]
    else:
        for key in sorted(set(params) - {"image", "aspect_ratio"}):
            details[f"{config.params_field}.{key}"] = ["Unrecognized key"]
        if "image" in params and not is_url(params["image"]):
            details[f"{config.params_field}.image"] = ["Invalid url"]
        if "aspect_ratio" in params and params["aspect_ratio"] not in ASPECT_RATIOS:
            details[f"{config.params_field}.aspect_ratio"] = [
                f"Expected one of {', '.join(ASPECT_RATIOS)}"
            ]
    if details:
        raise BodyError("Validation failed", details)
    return body
