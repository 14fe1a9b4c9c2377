"""Apiframe's webhook as tests send it: signed with the stack's key (or not), posted to the
receiver, and the refusals `/stats` counts."""

import json
from typing import Any

import httpx

from tests.support.stack import API_KEY, Stack
from worker.apiframe.signatures import sign

HOOK = "/webhooks/apiframe"


def signed(body: dict[str, Any], key: str = API_KEY) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, {"Content-Type": "application/json", "X-Webhook-Signature": sign(raw, key)}


async def post_hook(
    stack: Stack, body: dict[str, Any], *, ref: str | None = None, sign_it: bool = True
) -> httpx.Response:
    raw, headers = signed(body)
    if not sign_it:
        del headers["X-Webhook-Signature"]
    params = {"ref": ref} if ref else {}
    return await stack.api.post(HOOK, content=raw, headers=headers, params=params)


async def rejected(stack: Stack) -> dict[str, int]:
    """How many webhooks were refused, by reason, as `/stats` counts them."""
    counted: dict[str, int] = (await stack.api.get("/stats")).json()["webhooksRejected"]
    return counted
