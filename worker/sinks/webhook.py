"""A sink that POSTs each event to an HTTP endpoint, signed per the Standard Webhooks
specification. Any 2xx is success; a 429 or 503 may say when to try again (`Retry-After`).

An attempt costs a bounded amount whatever the endpoint does: the answer's body is streamed and
only its first `EXCERPT` bytes are read (a 2xx's not at all), and the whole attempt, from
connecting to the last byte read, ends after `deadline` seconds.
"""

import asyncio
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from worker.apiframe.client import parse_retry_after
from worker.ledger.keys import digest
from worker.ledger.records import JobRecord
from worker.sinks.base import EXCERPT, Sent

DEADLINE = 30.0  # seconds one attempt may take in all


def endpoint_name(url: str) -> str:
    """How logs name an endpoint: its origin and a digest, never its path or query, which
    often carry a credential (a Slack or Zapier hook's token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}#{digest(url)[:8]}"


class WebhookSink:
    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        signer: Webhook | None,
        *,
        deadline: float = DEADLINE,
    ) -> None:
        self.url = url
        self.name = endpoint_name(url)
        self.blocked_by = None if signer is not None else "IMAGEDOCK_EVENT_SECRET"
        self._http = http
        self._signer = signer
        self._deadline = deadline

    def serves(self, record: JobRecord | None, event_type: str) -> bool:
        return True  # every event

    async def send(self, event_id: str, body: str, record: JobRecord | None) -> Sent:
        assert self._signer is not None, "a sink blocked by a setting is never sent to"
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "imagedock-events",
            "accept-encoding": "identity",  # the excerpt is read raw: nothing to inflate
            "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(event_id, now, body),
        }
        request = self._http.build_request("POST", self.url, content=body, headers=headers)
        return await post_once(self._http, request, self.name, self._deadline)


async def post_once(
    http: httpx.AsyncClient, request: httpx.Request, name: str, deadline: float
) -> Sent:
    """One POST, over in `deadline` seconds whatever the endpoint does; errors name the
    endpoint by `name` only."""
    try:
        async with asyncio.timeout(deadline):
            response = await http.send(request, stream=True)
            try:
                status = response.status_code
                if 200 <= status < 300:
                    return Sent(True, status)
                retry_after = None
                if status in (429, 503):
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                return Sent(False, status, await excerpt_of(response), retry_after)
            finally:
                await response.aclose()
    except TimeoutError:
        return Sent(False, excerpt=f"no whole answer from {name} in {deadline:g} s")
    except httpx.HTTPError as exc:
        # httpx's message may hold the URL, which may hold a credential: never said.
        said = str(exc).replace(str(request.url), name)
        return Sent(False, excerpt=f"{exc.__class__.__name__}: {said}"[:EXCERPT])


async def excerpt_of(response: httpx.Response) -> str:
    """The first `EXCERPT` bytes of the body as text; the rest is never read. Raw bytes, so a
    compressed body cannot inflate in memory."""
    head = b""
    async for chunk in response.aiter_raw():
        head += chunk[: EXCERPT - len(head)]
        if len(head) >= EXCERPT:
            break
    return head.decode(response.encoding or "utf-8", errors="replace")
