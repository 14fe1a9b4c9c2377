"""What one process holds: one of each client, and the domain's services built over them.

Only `imagedock.clients.open_deps` makes one. The receiver's lifespan, the workers, the ops
commands and the tests all take theirs from it, so a process never holds two Redis pools, two
S3 clients or two Apiframe clients, however many arq workers it runs.
"""

import hashlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import cached_property

import httpx
from arq.connections import ArqRedis
from standardwebhooks import Webhook

from worker.apiframe import ApiframeClient
from worker.apiframe.catalog import LONGEST_LASTING
from worker.callers import Callers
from worker.events import Events
from worker.intake import Intake
from worker.landing.download import Downloader, HostClients
from worker.landing.hosts import HostPolicy
from worker.landing.job import LandingDeps
from worker.landing.storage import ObjectStore
from worker.ledger.archive import Archive
from worker.ledger.ledger import Ledger
from worker.ledger.waiting import Limits, SubmitQueue
from worker.polling import PollingDeps
from worker.settings import Settings
from worker.sinks.base import Sink
from worker.sinks.callback import CallbackSink
from worker.sinks.delivery import DeliveryDeps
from worker.sinks.webhook import WebhookSink
from worker.submission import SubmitDeps


@dataclass(frozen=True)
class Deps:
    """The clients, and what each part of the domain needs, made on first use; a part the
    settings leave out (no Apiframe key, no bucket) says which variable it needs when asked for."""

    settings: Settings
    redis: ArqRedis
    http: httpx.AsyncClient  # event deliveries and probes: no redirects followed unchecked
    hosts: HostClients  # downloads: a pool per result host name
    callback_clients: HostClients  # callers' webhooks: a pool per callback host name
    apiframe_client: ApiframeClient | None
    object_store: ObjectStore | None
    more_sinks: tuple[Sink, ...] = ()  # beside the settings' webhook endpoints

    @property
    def apiframe(self) -> ApiframeClient:
        self.settings.require("apiframe_key")
        assert self.apiframe_client is not None  # open_deps makes one whenever a key is set
        return self.apiframe_client

    @property
    def store(self) -> ObjectStore:
        self.settings.require("s3_bucket")
        assert self.object_store is not None  # open_deps makes one whenever a bucket is set
        return self.object_store

    @cached_property
    def ledger(self) -> Ledger:
        store = self.object_store
        archive = Archive(store) if store is not None else None
        return Ledger(self.redis, retention=self.settings.retention, archive=archive)

    @cached_property
    def sinks(self) -> tuple[Sink, ...]:
        """Every sink events go to: a signed webhook per `IMAGEDOCK_EVENT_URLS` entry, the
        `/v2/` callers' own webhooks, then any other kind given to `open_deps`."""
        secret = self.settings.event_secret
        signer = Webhook(secret.get_secret_value()) if secret is not None else None
        webhooks = [WebhookSink(url, self.http, signer) for url in self.settings.event_urls]
        ttl = self.settings.presign_ttl
        callbacks = CallbackSink(
            self.callback_clients, self.callers, self.callback_hosts, self.object_store, ttl
        )
        return (*webhooks, callbacks, *self.more_sinks)

    @cached_property
    def callers(self) -> Callers:
        return Callers(self.settings.caller_keys)

    @cached_property
    def callback_hosts(self) -> HostPolicy:
        return HostPolicy(self.settings.callback_hosts, "IMAGEDOCK_CALLBACK_HOSTS", "callback")

    @cached_property
    def events(self) -> Events:
        return Events(self.redis, self.ledger, self.sinks, self.settings.events_stream_maxlen)

    @cached_property
    def submitting(self) -> SubmitDeps:
        settings = self.settings
        settings.require("public_url")
        return SubmitDeps(
            self.ledger,
            self.redis,
            self.apiframe,
            self.events,
            settings.public_url,
            settings.poll_after,
            # Stable while the submitting key is: a rotation starts fresh refs for new keys.
            hashlib.sha256(f"imagedock-ref:{settings.api_keys[0]}".encode()).digest(),
            self.store,
            self.references_last,
            self.submit_queue,
        )

    @property
    def references_last(self) -> int:
        """Seconds past the longest a job of any route may run, and an hour Apiframe may
        queue it: how long an input's URL and a job's place in flight last."""
        return round(self.settings.job_deadline * LONGEST_LASTING) + 3600

    @cached_property
    def submit_queue(self) -> SubmitQueue:
        settings = self.settings
        limits = Limits(
            settings.submit_rate,
            settings.submit_concurrency,
            self.references_last,
            settings.caller_rate,
            settings.caller_in_flight,
            settings.caller_credits,
            settings.waiting_max,
            settings.credits_per_job,
            settings.claim,
        )
        return SubmitQueue(self.redis, self.ledger.script_config(), limits)

    @cached_property
    def landing(self) -> LandingDeps:
        policy = HostPolicy(self.settings.download_hosts)
        caps = {
            "image": self.settings.max_image_bytes,
            "video": self.settings.max_video_bytes,
            "audio": self.settings.max_audio_bytes,
        }
        downloader = Downloader(self.hosts, policy, caps)
        return LandingDeps(self.ledger, self.events, self.apiframe, downloader, self.store)

    @cached_property
    def intake(self) -> Intake:
        return Intake(self.ledger, self.settings.poll_after)

    @cached_property
    def polling(self) -> PollingDeps:
        return PollingDeps(
            self.ledger, self.events, self.apiframe, self.settings, self.submit_queue
        )

    @cached_property
    def delivery(self) -> DeliveryDeps:
        schedule, cap = self.settings.event_retry_schedule, self.settings.dead_letters_max
        return DeliveryDeps(self.redis, self.ledger, schedule, cap)


DepsOpener = Callable[[Settings], AbstractAsyncContextManager[Deps]]
