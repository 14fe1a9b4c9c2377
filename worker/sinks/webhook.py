"""A sink that POSTs each event to an HTTP endpoint, signed per the Standard Webhooks
specification. Any 2xx is success; a 429 or 503 may say when to try again (`Retry-After`)."""

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from worker.apiframe.client import parse_retry_after
from worker.sinks.base import EXCERPT, Sent


def endpoint_name(url: str) -> str:
    """How logs name an endpoint: its origin and a digest, never its path or query, which
    often carry a credential (a Slack or Zapier hook's token)."""
    parts = urlsplit(url)
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{parts.scheme}://{parts.hostname}#{digest}"


class WebhookSink:
    def __init__(self, url: str, http: httpx.AsyncClient, signer: Webhook | None) -> None:
        self.url = url
        self.name = endpoint_name(url)
        self.blocked_by = None if signer is not None else "IMAGEDOCK_EVENT_SECRET"
        self._http = http
        self._signer = signer

    async def send(self, event_id: str, body: str) -> Sent:
        assert self._signer is not None, "a sink blocked by a setting is never sent to"
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "imagedock-events",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(event_id, now, body),
        }
        try:
            response = await self._http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # httpx's message may hold the URL; the sink's name stands in for it.
            said = str(exc).replace(self.url, self.name)
            return Sent(False, excerpt=f"{exc.__class__.__name__}: {said}"[:EXCERPT])
        status = response.status_code
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        return Sent(200 <= status < 300, status, response.text[:EXCERPT], retry_after)
