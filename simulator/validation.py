"""Strict validation of the job routes' bodies, with Apiframe's error shapes: every model of
`POST /v2/images/generate` with its own params block (by hand, with the spellings the simulator
can be switched to), and the other nine routes against Apiframe's own request schemas.

`requests.json` holds those nine schemas as the OpenAPI document shipped with Apiframe's
first-party Node SDK (`@apiframe-ai/sdk` 2.0.0-beta.1, MIT) has them: each a `oneOf` of one
member per model (or action), every object closed (`additionalProperties: false`). A body is
checked against its model's or action's member, so a problem is named by its field."""

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator

from simulator.config import SimulatorConfig
from worker.apiframe.catalog import MODELS, OPERATIONS, PARAMS_KEYS, operation_of
from worker.apiframe.models import ACTION_FIELDS

GROK = "grok-imagine-image"
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "16:9", "9:16")
EVENTS = ("progress", "completed", "failed")
# The param that asks a model for several images, and the most it may ask for.
IMAGE_COUNTS = {"number_of_images": 10, "n": 4, "num_images": 4, "num_outputs": 4}


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


def params_key_for(model: str, config: SimulatorConfig) -> str:
    """Grok's block is spelled as this Apiframe is switched to; every other model's as published."""
    return config.params_field if model == GROK else MODELS[model].params_key


def validate_submission(body: Any, config: SimulatorConfig) -> dict[str, Any]:
    """The accepted body, or BodyError naming every problem by its field path."""
    if not isinstance(body, dict):
        raise BodyError("Request body must be a JSON object", {"": ["Expected object"]})
    model = body.get("model")
    if not isinstance(model, str) or model not in MODELS:
        expected = "Required" if model is None else "Unsupported model"
        raise BodyError("Validation failed", {"model": [expected]})
    own = params_key_for(model, config)
    allowed = {"prompt", "model", "webhookEvents", config.webhook_field, own}
    unknown = sorted(set(body) - allowed)
    if unknown:
        names = ", ".join(f"'{key}'" for key in unknown)
        raise BodyError(
            f"Unrecognized keys: {names}", {"": [f"Unrecognized key(s) in object: {names}"]}
        )
    details: dict[str, list[str]] = {}
    prompt, most = body.get("prompt"), MODELS[model].prompt_max
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= most:
        details["prompt"] = [f"Required string of 1 to {most} characters"]
    if config.webhook_field in body and not is_url(body[config.webhook_field]):
        details[config.webhook_field] = ["Invalid url"]
    events = body.get("webhookEvents")
    if "webhookEvents" in body and (
        not isinstance(events, list) or not events or any(e not in EVENTS for e in events)
    ):
        details["webhookEvents"] = [f"Non-empty list of {', '.join(EVENTS)}"]
    if MODELS[model].params_required and own not in body:
        details[own] = ["Required"]
    details.update(check_params(model, own, body.get(own, {})))
    if details:
        raise BodyError("Validation failed", details)
    return body


def validate_route(operation: str, body: Any, config: SimulatorConfig) -> dict[str, Any]:
    """A body for any route but `images/generate`: the accepted body, or BodyError."""
    if not isinstance(body, dict):
        raise BodyError("Request body must be a JSON object", {"": ["Expected object"]})
    route = OPERATIONS[operation]
    shared = {"webhookEvents", config.webhook_field}
    if route.acts_on_parent:
        action = body.get("action")
        if action not in route.actions:
            raise BodyError("Validation failed", {"action": [f"One of {', '.join(route.actions)}"]})
        required, optional = ACTION_FIELDS[str(action)]
        allowed = shared | set(required) | set(optional) | {"action", "parentJobId"}
        needed = set(required) | {"parentJobId"}
    else:
        model = body.get("model")
        if model not in route.models:
            elsewhere = operation_of(str(model)) if isinstance(model, str) else None
            said = "Required" if model is None else "Unsupported model"
            if elsewhere:
                said = f"Unsupported model: {model} belongs to /v2/{elsewhere}"
            raise BodyError("Validation failed", {"model": [said]})
        known = route.models[str(model)]
        allowed = shared | {"model", known.params_key} | ({"prompt"} if route.prompt else set())
        needed = {"model"} | ({"prompt"} if route.prompt else set())
        needed |= {known.params_key} if known.params_required else set()
    unknown = sorted(set(body) - allowed)
    if unknown:
        names = ", ".join(f"'{key}'" for key in unknown)
        raise BodyError(
            f"Unrecognized keys: {names}", {"": [f"Unrecognized key(s) in object: {names}"]}
        )
    missing = sorted(needed - set(body))
    if missing:
        raise BodyError("Validation failed", {name: ["Required"] for name in missing})
    if config.webhook_field in body and not is_url(body[config.webhook_field]):
        raise BodyError("Validation failed", {config.webhook_field: ["Invalid url"]})
    details = schema_problems(operation, body, skip={config.webhook_field, "webhookEvents"})
    if details:
        raise BodyError("Validation failed", details)
    return body


SCHEMAS: dict[str, Any] = json.loads(Path(__file__).with_name("requests.json").read_text())


def schema_problems(operation: str, body: dict[str, Any], skip: set[str]) -> dict[str, list[str]]:
    """What the route's schema finds wrong with `body` (less the fields in `skip`), by field."""
    route, schema = OPERATIONS[operation], SCHEMAS[operation]
    chosen = "action" if route.acts_on_parent else "model"
    members = [
        member
        for member in schema.get("oneOf", [schema])
        if body.get(chosen) in member["properties"][chosen].get("enum", [])
    ]
    checked = {name: value for name, value in body.items() if name not in skip}
    details: dict[str, list[str]] = {}
    for problem in Draft202012Validator(members[0] if members else schema).iter_errors(checked):
        path = ".".join(str(part) for part in problem.absolute_path)
        details.setdefault(path, []).append(problem.message)
    return details


def check_params(model: str, key: str, params: Any) -> dict[str, list[str]]:
    if not isinstance(params, dict):
        return {key: ["Expected object"]}
    details: dict[str, list[str]] = {}
    if model == GROK:
        for name in sorted(set(params) - {"image", "aspect_ratio"}):
            details[f"{key}.{name}"] = ["Unrecognized key"]
        if "image" in params and not is_url(params["image"]):
            details[f"{key}.image"] = ["Invalid url"]
        if "aspect_ratio" in params and params["aspect_ratio"] not in ASPECT_RATIOS:
            details[f"{key}.aspect_ratio"] = [f"Expected one of {', '.join(ASPECT_RATIOS)}"]
    for name, most in IMAGE_COUNTS.items():
        count = params.get(name)
        if name in params and (not isinstance(count, int) or not 1 <= count <= most):
            details[f"{key}.{name}"] = [f"Integer from 1 to {most}"]
    return details


def images_asked(params: dict[str, Any]) -> int | None:
    """How many images the body's params ask for, if any."""
    for name in IMAGE_COUNTS:
        if isinstance(params.get(name), int):
            return int(params[name])
    return None


__all__ = [
    "PARAMS_KEYS",
    "BodyError",
    "images_asked",
    "params_key_for",
    "validate_route",
    "validate_submission",
]
