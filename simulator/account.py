"""What Apiframe says of a key's account and how it lists a key's jobs: `GET /v2/me` and the
query of `GET /v2/jobs`."""

import uuid
from collections.abc import Mapping
from typing import Any

STATUSES = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")
FILTERS = {"status": "status", "model": "model", "id": "search"}  # job field -> query parameter


def account(key: str, credits: int) -> dict[str, Any]:
    """`GET /v2/me` for `key`, in the published shape, with stable UUIDs."""
    user = uuid.uuid5(uuid.NAMESPACE_URL, f"user:{key}")
    return {
        "user": {"id": str(user), "email": f"{user.hex[:12]}@example.com", "role": "user"},
        "team": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "team:simulated")),
            "name": "Simulated team",
            "credits": credits,
            "plan": "pro",
            "customerId": None,
        },
        "apiKey": {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"key:{key}")),
            "name": "simulator",
            "prefix": key[:8],
        },
    }


def list_problems(query: Mapping[str, str]) -> dict[str, list[str]]:
    """What is wrong with a `GET /v2/jobs` query, by parameter."""
    details: dict[str, list[str]] = {}
    if query.get("status", "QUEUED") not in (
        "QUEUED",
        "PROCESSING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    ):
        details["status"] = ["Expected QUEUED, PROCESSING, COMPLETED, FAILED or CANCELLED"]
    limit = query.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        details["limit"] = ["Integer from 1 to 100"]
    if query.get("scope", "user") not in ("user", "team"):
        details["scope"] = ["Expected user or team"]
    return details
