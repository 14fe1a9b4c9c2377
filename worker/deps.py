"""What one process holds: one of each client, and the domain's services built over them.

Only `imagedock.clients.open_deps` makes one. The receiver's lifespan, the workers, the ops
commands and the tests all take theirs from it, so a process never holds two Redis pools, two
S3 clients or two Apiframe clients, however many arq workers it runs.
"""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import cached_property

import httpx
from arq.connections import ArqRedis
from standardwebhooks import Webhook

from worker.apiframe import ApiframeClient
from worker.delivery import Deliverer
from worker.download import Downloader, HostClients
from worker.events import Events
from worker.hosts import HostPolicy
from worker.intake import Intake
from worker.landing import Landing
from worker.ledger import Ledger
from worker.polling import Poller
from worker.settings import Settings
from worker.storage import ObjectStore
from worker.submission import Submitter


@dataclass(frozen=True)
class Deps:
    """The clients, and each service made on first use; a part the settings leave out (no
    Apiframe key, no bucket, no event secret) says which variable it needs when asked for."""

    settings: Settings
    redis: ArqRedis
    http: httpx.AsyncClient  # event deliveries and probes: no redirects followed unchecked
    hosts: HostClients  # downloads: a pool per result host name
    apiframe_client: ApiframeClient | None
    object_store: ObjectStore | None

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
        return Ledger(self.redis, retention=self.settings.retention)

    @cached_property
    def events(self) -> Events:
        urls = tuple(self.settings.event_urls)
        return Events(self.redis, self.ledger, urls, self.settings.events_stream_maxlen)

    @cached_property
    def submitter(self) -> Submitter:
        settings = self.settings
        settings.require("public_url")
        return Submitter(
            self.ledger,
            self.redis,
            self.apiframe,
            self.events,
            settings.public_url,
            settings.poll_after,
        )

    @cached_property
    def landing(self) -> Landing:
        policy = HostPolicy(self.settings.download_hosts)
        downloader = Downloader(self.hosts, policy, self.settings.max_image_bytes)
        return Landing(self.ledger, self.events, self.apiframe, downloader, self.store)

    @cached_property
    def intake(self) -> Intake:
        return Intake(self.ledger, self.settings.poll_after)

    @cached_property
    def poller(self) -> Poller:
        return Poller(self.ledger, self.events, self.apiframe, self.settings)

    @cached_property
    def deliverer(self) -> Deliverer:
        self.settings.require("event_secret")
        secret = self.settings.event_secret
        assert secret is not None
        signer = Webhook(secret.get_secret_value())
        schedule = self.settings.event_retry_schedule
        cap = self.settings.dead_letters_max
        return Deliverer(self.redis, self.ledger, self.http, signer, schedule, cap)


DepsOpener = Callable[[Settings], AbstractAsyncContextManager[Deps]]
