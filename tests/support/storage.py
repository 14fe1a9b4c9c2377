"""Reading back what landing wrote: tests look, the worker never reads an object."""

import asyncio
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from simulator.local_s3 import LocalS3
from tests.support.stack import BUCKET
from worker.landing.storage import ObjectStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


async def read_object(store: ObjectStore, key: str) -> bytes:
    """The object's bytes, read through the store's own client."""

    def read() -> bytes:
        body: bytes = store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        return body

    return await asyncio.to_thread(read)


def direct_s3(server: LocalS3) -> "S3Client":
    """A client straight to the S3 server, whatever stands between it and imagedock."""
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    return client


def keys_in(client: "S3Client", prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))
