"""The simulator's webhook sender, with every delivery fault a receiver must survive."""

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

import httpx

from simulator.config import SimulatorConfig
from simulator.state import Delivery, SimJob
from worker.apiframe.signatures import sign

WRONG_KEY = "afk_not-the-key-that-created-this-job"


class WebhookSender:
    def __init__(
        self,
        config: Callable[[SimJob], SimulatorConfig],  # the knobs a job runs with
        http: httpx.AsyncClient,
        rng: random.Random,
        record: Callable[[Delivery], None],
    ) -> None:
        self._config = config
        self._http = http
        self._rng = rng
        self._record = record

    async def deliver(self, job: SimJob, event: str, payload: dict[str, Any]) -> None:
        """Send one event as the configured faults say: delayed, dropped, copied, mis-signed."""
        config = self._config(job)
        if job.webhook_url is None:
            return
        if config.delay_seconds:
            await asyncio.sleep(config.delay_seconds)
        if self._rng.random() < config.drop_rate:
            return
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Apiframe-Webhooks/2.0",
            "X-Webhook-Event": event,
        }
        if not config.unsigned:
            key = WRONG_KEY if config.wrong_signature else job.api_key
            headers["X-Webhook-Signature"] = sign(body, key, config.signature_variant)
        copies = max(1, config.duplicates)
        await asyncio.gather(*(self._post(job, event, body, headers) for _ in range(copies)))

    async def _post(self, job: SimJob, event: str, body: bytes, headers: dict[str, str]) -> None:
        config = self._config(job)
        assert job.webhook_url is not None
        job.webhook_status = job.webhook_status or "pending"
        for attempt, wait in enumerate((0.0, *config.retry_schedule), start=1):
            if wait:
                await asyncio.sleep(wait)
            status: int | None
            try:
                response = await self._http.post(
                    job.webhook_url,
                    content=body,
                    headers=headers,
                    timeout=config.webhook_timeout_seconds,
                )
                status = response.status_code
            except httpx.HTTPError:
                status = None
            self._record(Delivery(job.id, event, job.webhook_url, headers, body, status, attempt))
            if status is not None and 200 <= status < 300:
                job.webhook_status = "delivered"
                return
        job.webhook_status = "failed"
