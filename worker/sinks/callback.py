"""A `/v2/` caller's own webhook, sent as Apiframe sends its webhooks: the body Apiframe's SDK
reads (`worker.callers.jobs.webhook_body`), `X-Webhook-Event`, and `X-Webhook-Signature` keyed
by the SHA-256 of the caller's key. `completed` is sent once the files have landed, naming
their URLs in the bucket (presigned at each attempt); `failed` once the job has failed; and
`progress`, if asked for, as Apiframe reports it (once, best effort: the next says more).

The address is the job's own (`callback_url`), so the host is checked at every attempt as at
submit, and the POST goes to the address that was checked: a name that resolved to a public
address at submit cannot be pointed at a private one later.
"""

import json
from typing import Any

import httpx

from worker.callers.jobs import WEBHOOK_EVENTS, progress_body, webhook_body
from worker.callers.keys import Callers
from worker.landing.download import HostClients
from worker.landing.errors import LandingError
from worker.landing.hosts import HostPolicy
from worker.landing.storage import ObjectStore
from worker.ledger.records import JobRecord
from worker.sinks.base import EXCERPT, Sent
from worker.sinks.webhook import endpoint_name, post_once

NAME = "callbacks"
DEADLINE = 15.0  # seconds an attempt may take in all: about as long as Apiframe's own waits


def wants_progress(record: JobRecord) -> bool:
    return bool(record.callback_url and record.caller) and "progress" in record.callback_events


def wants(record: JobRecord, event_type: str) -> bool:
    """Whether the job's caller asked for the webhook imagedock's event `event_type` is."""
    if not record.callback_url or not record.caller:
        return False
    return WEBHOOK_EVENTS.get(event_type) in record.callback_events


class CallbackSink:
    name = NAME
    blocked_by = None

    def __init__(
        self,
        clients: HostClients,
        callers: Callers,
        hosts: HostPolicy,
        store: ObjectStore | None,
        presign_ttl: int,
        *,
        deadline: float = DEADLINE,
    ) -> None:
        self._clients = clients
        self._callers = callers
        self._hosts = hosts
        self._store = store
        self._presign_ttl = presign_ttl
        self._deadline = deadline

    def serves(self, record: JobRecord | None, event_type: str) -> bool:
        return record is not None and wants(record, event_type)

    async def send(self, event_id: str, body: str, record: JobRecord | None) -> Sent:
        assert record is not None  # see `serves`
        event_type = json.loads(body)["type"]
        urls: dict[str, str] = {}
        if self._store is not None:
            keys = [stored.key for stored in record.objects]
            urls = await self._store.presign(keys, self._presign_ttl)
        return await self.post(record, webhook_body(record, event_type, urls))

    async def send_progress(self, record: JobRecord, progress: int) -> Sent:
        """One `progress` webhook, if the caller asked for them; never retried, as the next
        progress (or the end) says more."""
        return await self.post(record, progress_body(record, progress))

    async def post(self, record: JobRecord, said: dict[str, Any]) -> Sent:
        """POST `said` to the caller's webhook, signed, as Apiframe's event `said["event"]`."""
        assert record.callback_url
        assert record.caller
        url, name = record.callback_url, endpoint_name(record.callback_url)
        try:
            target = await self._hosts.check(url)
        except LandingError as exc:
            return Sent(False, excerpt=str(exc)[:EXCERPT])
        raw = json.dumps(said).encode()
        signature = self._callers.signature(record.caller, raw)
        if signature is None:
            return Sent(False, excerpt=f"the caller {record.caller!r} has no key any more")
        pinned = httpx.URL(url).copy_with(host=str(target.address))
        headers = {
            "host": httpx.URL(url).netloc.decode(),
            "content-type": "application/json",
            "user-agent": "imagedock-callbacks",
            "accept-encoding": "identity",
            "x-webhook-event": said["event"],
            "x-webhook-signature": signature,
        }
        # The host's own pool, as downloads use: a connection made for another name on the
        # same address never carries a caller's webhook.
        client, pooled = self._clients.for_host(target.host)
        if not pooled:
            headers["connection"] = "close"
        request = client.build_request(
            "POST", pinned, content=raw, headers=headers, extensions={"sni_hostname": target.host}
        )
        return await post_once(client, request, name, self._deadline)
