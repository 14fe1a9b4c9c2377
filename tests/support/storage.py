"""Reading back what landing wrote: tests look, the worker never reads an object."""

import asyncio

from worker.landing.storage import ObjectStore


async def read_object(store: ObjectStore, key: str) -> bytes:
    """The object's bytes, read through the store's own client."""

    def read() -> bytes:
        body: bytes = store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        return body

    return await asyncio.to_thread(read)
