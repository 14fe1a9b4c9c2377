"""The one place imagedock makes clients: a Redis pool, the Apiframe client, the HTTP client for
downloads and deliveries, and the S3 client with its thread pool. One set per process, closed in
reverse order when the process stops.
"""

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import boto3
import httpx
from botocore.config import Config

from worker import __version__
from worker.apiframe import ApiframeClient
from worker.deps import Deps
from worker.landing.download import HostClients
from worker.landing.storage import ObjectStore
from worker.runtime.queue import connect
from worker.settings import Settings
from worker.sinks.base import Sink

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

USER_AGENT = f"imagedock/{__version__}"


@asynccontextmanager
async def open_deps(settings: Settings, *, sinks: tuple[Sink, ...] = ()) -> AsyncIterator[Deps]:
    """Every client `settings` allows for: Apiframe's only with a key, S3's only with a bucket.
    Events go to a webhook sink per `IMAGEDOCK_EVENT_URLS` entry, and to `sinks`."""
    async with AsyncExitStack() as stack:
        redis = await connect(settings.redis_url, max_connections=settings.redis_max_connections)
        stack.push_async_callback(redis.aclose, close_connection_pool=True)
        http = await stack.enter_async_context(http_client())
        hosts = HostClients(http_client)
        stack.push_async_callback(hosts.aclose)
        callbacks = HostClients(http_client)  # callers' webhook hosts: never the CDN's pools
        stack.push_async_callback(callbacks.aclose)
        apiframe = None
        if settings.api_keys:
            apiframe = ApiframeClient(settings.apiframe_url, settings.api_keys[0])
            await stack.enter_async_context(apiframe)
        store = None
        if settings.s3_bucket:
            threads = ThreadPoolExecutor(settings.s3_concurrency, thread_name_prefix="s3")
            # Off the loop, and dropping calls not yet started: a stop must not wait on them.
            stack.push_async_callback(asyncio.to_thread, threads.shutdown, cancel_futures=True)
            client = s3_client(settings)
            stack.callback(client.close)
            store = ObjectStore(
                client,
                threads,
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                checksum_mode=settings.s3_checksum_mode,
            )
        yield Deps(settings, redis, http, hosts, callbacks, apiframe, store, sinks)


def http_client() -> httpx.AsyncClient:
    """For event deliveries, probes and (one a host name) downloads: nothing followed or
    proxied unchecked."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=10.0),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,  # each hop is checked against the host policy
        # Downloads connect to the address they checked; a proxy from the environment would
        # connect by name instead. Run one as an explicit egress gateway, if any.
        trust_env=False,
    )


def s3_client(settings: Settings) -> "S3Client":
    """boto3's S3 client, pooled to match the thread pool that calls it."""
    config = Config(
        signature_version="s3v4",  # with a custom endpoint boto3 would otherwise presign with v2
        # Every body carries a digest S3 verifies, in a signed header: the SHA-256 the download
        # computed (or Content-MD5, or boto3's CRC32 for a part). Signing the payload as well
        # would hash every byte a second time, as boto3 does over plain HTTP unless told.
        s3={"addressing_style": settings.s3_addressing_style, "payload_signing_enabled": False},
        # One quick retry inside a call, for a blip; what lasts is arq's to retry, with backoff.
        retries={"mode": "standard", "total_max_attempts": 2},
        max_pool_connections=settings.s3_concurrency,
        request_checksum_calculation=settings.s3_checksum_mode,
        response_checksum_validation=settings.s3_checksum_mode,
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra=USER_AGENT,
    )
    key_id, secret = settings.s3_access_key_id, settings.s3_secret_access_key
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        verify=settings.s3_ca_bundle,
        config=config,
        # Unset, boto3's chain answers: environment, profile, or the instance's or pod's role.
        aws_access_key_id=key_id.get_secret_value() if key_id else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )
    return client
